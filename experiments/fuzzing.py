"""Fuzz ``semlib.codec.decode`` with damaged and forged ``.semc`` files (run by
scripts/fuzz_decode.py; tests/test_fuzz.py imports it for a short in-process run).

    nice -n 10 .venv/bin/python scripts/fuzz_decode.py --cases 10000 --workers 2
    nice -n 10 .venv/bin/python scripts/fuzz_decode.py --tiled --cases 2000 --workers 1   # tiled files (version 3)

Seed files are real encodings (a few images, scalar gamma and ROI level maps) made with a
`tiny` model with random weights (no trained checkpoint exists yet; the file format and
the decoder's checks do not depend on the weights). Each case mutates one seed file in
one of the ways of ``KINDS`` -- most of them recompute the CRC, so that the damage gets
past the checksum into the parser, the level map, and the rANS decoder itself -- and is
decoded in a worker process. The outcome of a case is one of

    decoded        the file is still valid: the output is a uint8 image of the header's size
                   (the table also counts, apart, the cases whose mutation left the bytes unchanged)
    format_error   semlib.FormatError with a one-line message
    bad_output     decoded, but the output is not a uint8 H x W x 3 image of the header's size
    bad_message    FormatError with an empty, multi-line or overlong message
    other_error    any other exception (its type is recorded)
    crash          the worker process died (a segfault shows as signal 11)
    timeout        no answer within --timeout seconds (the worker is killed)
    memory         the worker's peak RSS grew by more than --rss-mb during the case

Only the first two are acceptable. Counts per kind and outcome are printed as a Markdown
table and written as JSON (``--out``). Every case is reproducible from ``--seed`` and its
number (``--only N``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter, defaultdict
import multiprocessing
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

OK_OUTCOMES = ("decoded", "format_error")
OUTCOMES = ("decoded", "format_error", "bad_output", "bad_message", "other_error", "crash", "timeout", "memory")


# --------------------------------------------------------------------------- seed files


def seed_files(model) -> dict[str, bytes]:
    """Real encodings: a few image sizes, scalar gamma and ROI level maps."""
    from semlib import codec, data

    photo = data.sample_image("coffee")[140:236, 220:348]                 # 96 x 128 (ships with scikit-image)
    strip = data.sample_image("astronaut")[100:140, 0:200]                # 40 x 200
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(7, 13, 3), dtype=np.uint8)
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[10:60, 20:90] = 1.0
    strip_mask = np.zeros(strip.shape[:2], np.float32)
    strip_mask[:, 120:] = 1.0
    files = {
        "photo_g300": codec.encode(photo, gamma=300.0, model=model),
        "photo_g40": codec.encode(photo, gamma=40.0, model=model),
        "photo_roi": codec.encode(photo, gamma=200.0, importance=mask, kappa=1.0, model=model),
        "strip_g1000": codec.encode(strip, gamma=1000.0, model=model),
        "strip_roi": codec.encode(strip, gamma=500.0, importance=strip_mask, kappa=2.0, model=model),
        "noise_7x13_g150": codec.encode(noise, gamma=150.0, model=model),
    }
    return files


# --------------------------------------------------------------------------- the file's layout


def layout(data: bytes) -> dict:
    """Offsets of the fields of a valid ``.semc`` file (see semlib/codec.py)."""
    pos = {"version": 4, "flags": 5, "height": 6, "width": 10, "name_len": 14}
    n = data[14]
    pos["name"] = (15, n)
    p = 15 + n
    pos["fingerprint"] = p
    pos["gamma"] = p + 8
    p += 12
    if data[5] & 1:
        pos["kappa"], pos["log_lo"], pos["log_hi"], pos["map_len"] = p, p + 4, p + 8, p + 12
        (m,) = struct.unpack_from("<I", data, p + 12)
        pos["map"] = (p + 16, m)
        p += 16 + m
    pos["k"] = p
    k = data[p]
    lengths = struct.unpack_from(f"<{k}I", data, p + 1)
    pos["lengths"] = [p + 1 + 4 * i for i in range(k)]
    p += 1 + 4 * k
    if data[4] >= 2:                               # version 2: the fragile-symbol lists, the symbol CRC
        (m,) = struct.unpack_from("<I", data, p)
        pos["side_len"], pos["sides"], pos["symbols_crc"] = p, (p + 4, m), p + 4 + m
        p += 8 + m
    pos["strings_start"] = p
    strings = []
    for length in lengths:
        strings.append((p, length))
        p += length
    pos["strings"] = strings
    assert p == len(data) - 4
    return pos


def with_crc(body: bytes) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def body_of(data: bytes) -> bytearray:
    return bytearray(data[:-4])


def _interesting_u32(rng, current: int, size: int) -> int:
    choices = [0, 1, current + 1, current - 1, current * 2, current // 2, size, size * 4,
               0xFFFFFFFF, 0x7FFFFFFF, 1 << 16, int(rng.integers(0, 1 << 32))]
    return int(choices[int(rng.integers(len(choices)))]) & 0xFFFFFFFF


def _flip_bits(buf: bytearray, rng, lo: int, hi: int, count: int) -> None:
    for _ in range(count):
        i = int(rng.integers(lo, hi))
        buf[i] ^= 1 << int(rng.integers(8))


# --------------------------------------------------------------------------- mutations


def m_truncate(data, rng, others):
    return data[: int(rng.integers(0, len(data)))]


def m_truncate_crc(data, rng, others):
    body = body_of(data)
    return with_crc(body[: int(rng.integers(0, len(body)))])


def m_bitflip(data, rng, others):
    buf = bytearray(data)
    _flip_bits(buf, rng, 0, len(buf), int(rng.integers(1, 9)))
    return bytes(buf)


def m_bitflip_crc(data, rng, others):
    body = body_of(data)
    _flip_bits(body, rng, 0, len(body), int(rng.integers(1, 9)))
    return with_crc(body)


def m_insert(data, rng, others):
    i = int(rng.integers(0, len(data) + 1))
    return data[:i] + rng.bytes(int(rng.integers(1, 65))) + data[i:]


def m_insert_crc(data, rng, others):
    body = bytes(body_of(data))
    i = int(rng.integers(0, len(body) + 1))
    return with_crc(body[:i] + rng.bytes(int(rng.integers(1, 65))) + body[i:])


def m_delete(data, rng, others):
    i = int(rng.integers(0, len(data)))
    return data[:i] + data[i + int(rng.integers(1, 65)):]


def m_delete_crc(data, rng, others):
    body = bytes(body_of(data))
    i = int(rng.integers(0, len(body)))
    return with_crc(body[:i] + body[i + int(rng.integers(1, 65)):])


def m_header_length_crc(data, rng, others):
    """A wrong length in the header: the name length, the level map length, the number
    of latent strings, or one latent string's length."""
    pos, body = layout(data), body_of(data)
    fields = ["name_len", "k"] + [f"len{i}" for i in range(len(pos["lengths"]))]
    if "map_len" in pos:
        fields.append("map_len")
    f = fields[int(rng.integers(len(fields)))]
    if f in ("name_len", "k"):
        body[pos[f]] = int(rng.integers(0, 256))
    else:
        off = pos["map_len"] if f == "map_len" else pos["lengths"][int(f[3:])]
        (cur,) = struct.unpack_from("<I", body, off)
        struct.pack_into("<I", body, off, _interesting_u32(rng, cur, len(data)))
    return with_crc(body)


def m_forged_size_crc(data, rng, others):
    """Another image size in the header (huge ones included), strings unchanged."""
    body = body_of(data)
    side = [0, 1, 7, 63, 64, 65, 1000, 9999, 10000, 65535, 65536, 1 << 20, 0xFFFFFFFF,
            int(rng.integers(1, 1 << 16)), int(rng.integers(0, 1 << 32))]
    h = side[int(rng.integers(len(side)))]
    w = side[int(rng.integers(len(side)))]
    which = int(rng.integers(3))
    (h0, w0) = struct.unpack_from("<II", body, 6)
    struct.pack_into("<II", body, 6, h if which != 1 else h0, w if which != 0 else w0)
    return with_crc(body)


def m_field_value_crc(data, rng, others):
    """A wrong value in a fixed field: version, flags, gamma, kappa, the level range,
    the configuration name or the checkpoint fingerprint."""
    pos, body = layout(data), body_of(data)
    floats = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-38, 1e38, 3.4e38, 1e-45,
              float(rng.normal() * 100), float(np.exp(rng.normal() * 10))]
    fields = ["version", "flags", "gamma", "name", "fingerprint"]
    if "kappa" in pos:
        fields += ["kappa", "log_lo", "log_hi"]
    f = fields[int(rng.integers(len(fields)))]
    if f in ("version", "flags"):
        body[pos[f]] = int(rng.integers(0, 256))
    elif f in ("gamma", "kappa", "log_lo", "log_hi"):
        struct.pack_into("<f", body, pos[f], floats[int(rng.integers(len(floats)))])
    elif f == "name":
        start, n = pos["name"]
        name = [b"small", b"paper", b"tinY", b"\xff\xfe", b"", b"tiny\x00", rng.bytes(4)][int(rng.integers(7))]
        body = body[:start - 1] + bytes([len(name)]) + name + body[start + n:]
    else:
        _flip_bits(body, rng, pos["fingerprint"], pos["fingerprint"] + 8, 1)
    return with_crc(body)


def m_latent_crc(data, rng, others):
    """Damage inside one latent string, lengths kept consistent and the CRC recomputed,
    so that the rANS decoder itself reads garbage."""
    pos, body = layout(data), body_of(data)
    i = int(rng.integers(len(pos["strings"])))
    start, n = pos["strings"][i]
    s = bytearray(body[start:start + n])
    how = int(rng.integers(8))
    if how == 0:                                   # a few bit flips
        _flip_bits(s, rng, 0, len(s), int(rng.integers(1, 5)))
    elif how == 1:                                 # a random run
        a = int(rng.integers(0, len(s)))
        b = min(len(s), a + int(rng.integers(1, 33)))
        s[a:b] = rng.bytes(b - a)
    elif how == 2:                                 # all zeros / all ones
        s[:] = bytes([0x00 if rng.random() < 0.5 else 0xFF]) * len(s)
    elif how == 3:                                 # shorter (possibly empty)
        s = s[: int(rng.integers(0, len(s)))]
    elif how == 4:                                 # longer: random or 0xFF bytes appended
        extra = int(rng.integers(1, 4096))
        s += rng.bytes(extra) if rng.random() < 0.5 else b"\xff" * extra
    elif how == 5:                                 # entirely random, any length
        s = bytearray(rng.bytes(int(rng.integers(0, 2 * len(s) + 16))))
    elif how == 6:                                 # the string of another latent
        j = int(rng.integers(len(pos["strings"])))
        a, m = pos["strings"][j]
        s = bytearray(body[a:a + m])
    else:                                          # the same latent of another file
        other = others[int(rng.integers(len(others)))]
        opos = layout(other)
        if i < len(opos["strings"]):
            a, m = opos["strings"][i]
            s = bytearray(other[a:a + m])
    lengths = [m for _, m in pos["strings"]]
    lengths[i] = len(s)
    head = (body[:pos["k"] + 1] + struct.pack(f"<{len(lengths)}I", *lengths)
            + body[pos["k"] + 1 + 4 * len(lengths):pos["strings_start"]])
    strings = [bytes(body[a:a + m]) for a, m in pos["strings"]]
    strings[i] = bytes(s)
    return with_crc(bytes(head) + b"".join(strings))


def m_level_map_crc(data, rng, others):
    """ROI files: a damaged, re-packed (valid, other levels) or wrong-size level map."""
    pos, body = layout(data), body_of(data)
    if "map" not in pos:
        return m_bitflip_crc(data, rng, others)
    start, m = pos["map"]
    raw = zlib.decompress(bytes(body[start:start + m]))
    how = int(rng.integers(4))
    if how == 0:
        packed = bytearray(body[start:start + m])
        _flip_bits(packed, rng, 0, len(packed), int(rng.integers(1, 4)))
    elif how == 1:                                  # valid map, other levels: must decode
        packed = zlib.compress(rng.bytes(len(raw)), 9)
    elif how == 2:                                  # one block more or fewer
        packed = zlib.compress(raw[:-1] if rng.random() < 0.5 else raw + b"\x80", 9)
    else:                                           # a zlib bomb for the map
        packed = zlib.compress(b"\x00" * (1 << 24), 9)
    new = bytes(body[:pos["map_len"]]) + struct.pack("<I", len(packed)) + packed + bytes(body[start + m:])
    return with_crc(new)


def m_sides_crc(data, rng, others):
    """Version 2: damaged fragile-symbol lists (bit flips, random bytes, another file's
    lists, a huge count) or symbol CRC, the file's CRC recomputed."""
    pos, body = layout(data), body_of(data)
    if "sides" not in pos:
        return m_bitflip_crc(data, rng, others)
    start, m = pos["sides"]
    side = bytearray(body[start:start + m])
    how = int(rng.integers(5))
    if how == 0 and side:
        _flip_bits(side, rng, 0, len(side), int(rng.integers(1, 4)))
    elif how == 1:
        side = bytearray(rng.bytes(int(rng.integers(0, 2 * m + 8))))
    elif how == 2:
        other = others[int(rng.integers(len(others)))]
        opos = layout(other)
        if "sides" in opos:
            a, n = opos["sides"]
            side = bytearray(other[a:a + n])
    elif how == 3:                                  # a count of 2**35 - 1 symbols
        side = bytearray(b"\xff\xff\xff\xff\x7f") + side[1:]
    else:
        struct.pack_into("<I", body, pos["symbols_crc"], int(rng.integers(0, 1 << 32)))
    new = bytes(body[:pos["side_len"]]) + struct.pack("<I", len(side)) + bytes(side) + bytes(body[start + m:])
    return with_crc(new)


def m_splice_crc(data, rng, others):
    """The header of one file with the latent strings of another."""
    other = others[int(rng.integers(len(others)))]
    pos, opos = layout(data), layout(other)
    head = data[:pos["k"]]
    tail = other[opos["k"]:-4]
    return with_crc(head + tail)


def m_random(data, rng, others):
    return rng.bytes(int(rng.integers(0, 4097)))


def m_random_envelope_crc(data, rng, others):
    """Magic, version 1 or 2 and a valid CRC around random bytes (or a random valid-looking header)."""
    if rng.random() < 0.5:
        return with_crc(b"SEMC" + bytes([int(rng.integers(1, 3))]) + rng.bytes(int(rng.integers(0, 2049))))
    pos = layout(data)
    return with_crc(data[:pos["k"]] + rng.bytes(int(rng.integers(0, 2049))))


KINDS = {
    "truncate": m_truncate,
    "truncate_crc": m_truncate_crc,
    "bitflip": m_bitflip,
    "bitflip_crc": m_bitflip_crc,
    "insert": m_insert,
    "insert_crc": m_insert_crc,
    "delete": m_delete,
    "delete_crc": m_delete_crc,
    "header_length_crc": m_header_length_crc,
    "sides_crc": m_sides_crc,
    "forged_size_crc": m_forged_size_crc,
    "field_value_crc": m_field_value_crc,
    "latent_crc": m_latent_crc,
    "level_map_crc": m_level_map_crc,
    "splice_crc": m_splice_crc,
    "random": m_random,
    "random_envelope_crc": m_random_envelope_crc,
}


# --------------------------------------------------------------------------- tiled files (--tiled)


def tiled_seed_files(model) -> dict[str, bytes]:
    """Tiled encodings (format version 3, semlib.tiling) of the seed images, small tiles forced."""
    from semlib import codec, data

    photo = data.sample_image("coffee")[140:236, 220:348]                 # 2 x 2 tiles of 64, overlap 8
    strip = data.sample_image("astronaut")[100:140, 0:200]                # 1 x 4 tiles of 64, overlap 16
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[10:60, 20:90] = 1.0
    return {
        "photo_tiled_g300": codec.encode(photo, gamma=300.0, model=model, tile=64, tile_overlap=8),
        "photo_tiled_roi": codec.encode(photo, gamma=200.0, importance=mask, kappa=1.0, model=model,
                                        tile=64, tile_overlap=8),
        "strip_tiled_g1000": codec.encode(strip, gamma=1000.0, model=model, tile=64, tile_overlap=16),
    }


def tiled_layout(data: bytes) -> dict:
    """Offsets of the tiling fields and of each tile's section of a valid version-3 file."""
    p = 15 + data[14] + 12
    if data[5] & 1:
        p += 16 + struct.unpack_from("<I", data, p + 12)[0]
    (t,) = struct.unpack_from("<I", data, p + 4)
    lengths = struct.unpack_from(f"<{t}I", data, p + 8)
    pos = {"tile": p, "overlap": p + 2, "count": p + 4, "lengths": [p + 8 + 4 * i for i in range(t)]}
    q, sections = p + 8 + 4 * t, []
    for n in lengths:
        sections.append((q, n))
        q += n
    pos["sections"] = sections
    assert q == len(data) - 4
    return pos


def m_tiled_crc(data, rng, others):
    """Version 3: a wrong tile size, overlap, tile count or section length; damage inside one
    tile's section (its latent count or lengths, bit flips, a random run, another tile's or
    another file's section in its place); the file's CRC recomputed."""
    pos, body = tiled_layout(data), body_of(data)
    how = int(rng.integers(7))
    if how == 0:
        struct.pack_into("<H", body, pos["tile"], [0, 63, 64, 100, 128, 192, 65535][int(rng.integers(7))])
    elif how == 1:
        struct.pack_into("<H", body, pos["overlap"], [0, 4, 8, 16, 24, 32, 40, 65535][int(rng.integers(8))])
    elif how == 2:
        (cur,) = struct.unpack_from("<I", body, pos["count"])
        struct.pack_into("<I", body, pos["count"], _interesting_u32(rng, cur, len(data)))
    elif how == 3:
        off = pos["lengths"][int(rng.integers(len(pos["lengths"])))]
        (cur,) = struct.unpack_from("<I", body, off)
        struct.pack_into("<I", body, off, _interesting_u32(rng, cur, len(data)))
    else:
        i = int(rng.integers(len(pos["sections"])))
        start, n = pos["sections"][i]
        sec = bytearray(body[start:start + n])
        if how == 4:                                   # its latent count, or one string length
            at = 0 if rng.random() < 0.3 else 1 + 4 * int(rng.integers(sec[0]))
            if at == 0:
                sec[0] = int(rng.integers(0, 256))
            else:
                (cur,) = struct.unpack_from("<I", sec, at)
                struct.pack_into("<I", sec, at, _interesting_u32(rng, cur, n))
        elif how == 5:                                 # bit flips or a random run
            if rng.random() < 0.5:
                _flip_bits(sec, rng, 0, len(sec), int(rng.integers(1, 5)))
            else:
                a = int(rng.integers(0, len(sec)))
                sec[a:a + 32] = rng.bytes(len(sec[a:a + 32]))
        else:                                          # another tile's section, or another file's
            src = data if rng.random() < 0.5 else others[int(rng.integers(len(others)))]
            spos = tiled_layout(src)
            a, m = spos["sections"][int(rng.integers(len(spos["sections"])))]
            sec = bytearray(src[a:a + m])
        lengths = [m for _, m in pos["sections"]]
        lengths[i] = len(sec)
        first = pos["lengths"][0]
        secs = [bytes(body[a:a + m]) for a, m in pos["sections"]]
        secs[i] = bytes(sec)
        body = bytearray(body[:first] + struct.pack(f"<{len(lengths)}I", *lengths) + b"".join(secs))
    return with_crc(body)


# the kinds that do not read the version-2 layout, and the tiled one
TILED_KINDS = {k: KINDS[k] for k in ("truncate", "truncate_crc", "bitflip", "bitflip_crc", "insert", "insert_crc",
                                     "delete", "delete_crc", "forged_size_crc", "random")} | {"tiled_crc": m_tiled_crc}


def make_case(i: int, seed: int, seeds: dict[str, bytes], kinds: dict | None = None) -> tuple[str, str, bytes]:
    """Case ``i``: (kind, seed file name, mutated bytes); kinds take turns (``kinds``: default
    :data:`KINDS`; :data:`TILED_KINDS` for the tiled seeds)."""
    kinds = KINDS if kinds is None else kinds
    rng = np.random.default_rng([seed, i])
    kind = list(kinds)[i % len(kinds)]
    names = sorted(seeds)
    name = names[int(rng.integers(len(names)))]
    others = [seeds[n] for n in names if n != name]
    return kind, name, kinds[kind](seeds[name], rng, others)


# --------------------------------------------------------------------------- judging one decode


def judge(data: bytes, model) -> tuple[str, str]:
    """Decode ``data`` in this process: (outcome, detail) -- see the module docstring."""
    from semlib import FormatError, codec

    try:
        out = codec.decode(data, model=model)
    except FormatError as e:
        msg = str(e)
        if not msg or "\n" in msg or len(msg) > 300:
            return "bad_message", msg[:300]
        return "format_error", msg
    except Exception as e:  # noqa: BLE001 - any other exception is what we are looking for
        return "other_error", f"{type(e).__name__}: {str(e)[:200]} | {traceback.format_exc(limit=-3)[-600:]}"
    h = codec.parse(data)
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (h.height, h.width, 3)):
        return "bad_output", f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')} for {h.height}x{h.width}"
    return "decoded", f"{h.height}x{h.width}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(conn, ckpt: str, data_limit_mb: int):
    import torch

    from semlib.models import load_model

    torch.set_num_threads(1)
    model = load_model(ckpt)
    if data_limit_mb:
        # a forged size must not take the machine down: allocations beyond the limit fail
        soft = (int(_peak_rss_mb()) + data_limit_mb) << 20
        resource.setrlimit(resource.RLIMIT_DATA, (soft, resource.RLIM_INFINITY))
    conn.send(("ready", _peak_rss_mb()))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        i, data = msg
        before = _peak_rss_mb()
        t0 = time.perf_counter()
        outcome, detail = judge(data, model)
        conn.send((i, outcome, detail, time.perf_counter() - t0, _peak_rss_mb() - before, _peak_rss_mb()))


class Pool:
    """Worker processes, each decoding one case at a time; a dead or stuck worker is
    recorded (crash / timeout) and replaced."""

    def __init__(self, n: int, ckpt: str, timeout: float, data_limit_mb: int):
        self.ckpt, self.timeout, self.data_limit_mb = ckpt, timeout, data_limit_mb
        self.workers = [self._start() for _ in range(n)]

    def _start(self):
        ctx = multiprocessing.get_context("spawn")      # no fork: the parent has OpenMP threads
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, self.ckpt, self.data_limit_mb), daemon=True)
        p.start()
        child.close()
        tag, _ = parent.recv()
        assert tag == "ready"
        return {"proc": p, "conn": parent, "case": None, "since": 0.0}

    def run(self, cases, on_result):
        """``cases``: iterable of (i, bytes); ``on_result(i, outcome, detail, seconds, rss_delta, rss)``."""
        it = iter(cases)
        pending = True
        while True:
            for w in self.workers:
                if w["case"] is None and pending:
                    try:
                        i, data = next(it)
                    except StopIteration:
                        pending = False
                        break
                    w["case"], w["since"] = i, time.monotonic()
                    w["conn"].send((i, data))
            busy = [w for w in self.workers if w["case"] is not None]
            if not busy:
                return
            ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy], timeout=1.0)
            now = time.monotonic()
            for k, w in enumerate(self.workers):
                if w["case"] is None:
                    continue
                if w["conn"] in ready and w["conn"].poll():
                    try:
                        i, outcome, detail, secs, drss, rss = w["conn"].recv()
                    except (EOFError, OSError):
                        pass
                    else:
                        on_result(i, outcome, detail, secs, drss, rss)
                        w["case"] = None
                        continue
                if not w["proc"].is_alive():
                    code = w["proc"].exitcode
                    sig = f"signal {-code} ({signal.Signals(-code).name})" if code and code < 0 else f"exit code {code}"
                    on_result(w["case"], "crash", sig, now - w["since"], 0.0, 0.0)
                    self.workers[k] = self._start()
                elif now - w["since"] > self.timeout:
                    os.kill(w["proc"].pid, signal.SIGKILL)
                    w["proc"].join()
                    on_result(w["case"], "timeout", f"> {self.timeout:.0f} s", now - w["since"], 0.0, 0.0)
                    self.workers[k] = self._start()

    def close(self):
        for w in self.workers:
            try:
                w["conn"].send(None)
            except (BrokenPipeError, OSError):
                pass
            w["proc"].join(timeout=10)
            if w["proc"].is_alive():
                os.kill(w["proc"].pid, signal.SIGKILL)


# --------------------------------------------------------------------------- report


def markdown_table(counts: dict[str, Counter]) -> str:
    """Cases per kind and outcome; 'unchanged' counts the decoded cases whose bytes the
    mutation left as they were (a sub-count of 'decoded')."""
    cols = [o for o in OUTCOMES if o in OK_OUTCOMES or any(c[o] for c in counts.values())]
    cols.insert(1, "unchanged")
    lines = ["| kind | cases | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    total = Counter()
    for kind, c in counts.items():
        total.update(c)
        n = sum(v for o, v in c.items() if o != "unchanged")
        lines.append(f"| {kind} | {n} | " + " | ".join(str(c[o]) for o in cols) + " |")
    n = sum(v for o, v in total.items() if o != "unchanged")
    lines.append(f"| **all** | **{n}** | " + " | ".join(f"**{total[o]}**" for o in cols) + " |")
    return "\n".join(lines)


def platform_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import compressai

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "compressai": compressai.__version__, "numpy": np.__version__,
            "system": platform.platform()}


# Long: the options, the worker pool and the report of a fuzzing run, in that order.
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per decode before it counts as a hang")
    ap.add_argument("--rss-mb", type=float, default=500.0, help="peak RSS growth in one decode that counts as a blow-up")
    ap.add_argument("--data-limit-mb", type=int, default=3000, help="RLIMIT_DATA headroom of a worker (0: none)")
    ap.add_argument("--only", type=int, nargs="*", help="run only these case numbers")
    ap.add_argument("--out", default="results/robustness/fuzz_decode.json")
    ap.add_argument("--tiled", action="store_true",
                    help="fuzz tiled files (format version 3) with TILED_KINDS instead (default --out: "
                         "results/robustness/fuzz_decode_tiled.json)")
    ap.add_argument("--save-failures", default=None, help="folder for the bytes of failing cases")
    args = ap.parse_args(argv)

    from semlib.models import random_model, save_model

    model = random_model("tiny", 0)   # the recipe of tests/conftest.py: random_tiny
    seeds = tiled_seed_files(model) if args.tiled else seed_files(model)
    kinds = TILED_KINDS if args.tiled else KINDS
    if args.tiled and args.out == "results/robustness/fuzz_decode.json":
        args.out = "results/robustness/fuzz_decode_tiled.json"
    tmp = tempfile.TemporaryDirectory()
    ckpt = os.path.join(tmp.name, "tiny_random.pt")
    save_model(model, ckpt, note="random weights, fuzzing only")

    numbers = args.only if args.only else range(args.cases)
    meta = {}

    def cases():
        for i in numbers:
            kind, name, data = make_case(i, args.seed, seeds, kinds)
            meta[i] = (kind, name, len(data), data == seeds[name])
            yield i, data

    counts: dict[str, Counter] = defaultdict(Counter)
    messages: dict[str, Counter] = defaultdict(Counter)
    decoded_examples: dict[str, list] = defaultdict(list)
    rans_refused: Counter = Counter()    # cases refused by the rANS decoder itself
    failures, slowest, peak = [], (0.0, None), 0.0
    t0 = time.time()
    done = 0

    def on_result(i, outcome, detail, secs, drss, rss):
        nonlocal slowest, peak, done
        if outcome in OK_OUTCOMES and drss > args.rss_mb:
            outcome, detail = "memory", f"peak RSS +{drss:.0f} MB ({detail})"
        if outcome == "format_error" and "allocate" in detail:
            outcome = "memory"
        kind, name, size, unchanged = meta[i]
        counts[kind][outcome] += 1
        if outcome == "decoded" and unchanged:
            counts[kind]["unchanged"] += 1
        if outcome == "format_error":
            messages[kind][detail.split(":")[0][:80]] += 1
            if detail.startswith("latent strings cannot be decoded"):
                rans_refused[kind] += 1
        if outcome == "decoded" and len(decoded_examples[kind]) < 10:
            decoded_examples[kind].append([i, name, detail])
        if outcome not in OK_OUTCOMES:
            failures.append({"case": i, "kind": kind, "seed_file": name, "bytes": size, "outcome": outcome, "detail": detail})
            print(f"FAIL case {i} ({kind}, {name}): {outcome}: {detail[:300]}", flush=True)
            if args.save_failures:
                Path(args.save_failures).mkdir(parents=True, exist_ok=True)
                Path(args.save_failures, f"case{i}_{kind}.semc").write_bytes(make_case(i, args.seed, seeds, kinds)[2])
        if secs > slowest[0]:
            slowest = (secs, {"case": i, "kind": kind, "outcome": outcome})
        peak = max(peak, rss)
        done += 1
        if done % 1000 == 0:
            print(f"  {done} cases, {time.time() - t0:.0f} s", flush=True)

    pool = Pool(args.workers, ckpt, args.timeout, args.data_limit_mb)
    try:
        pool.run(cases(), on_result)
    finally:
        pool.close()
    wall = time.time() - t0

    counts = {k: counts[k] for k in kinds if k in counts}
    table = markdown_table(counts)
    print(table)
    n_bad = len(failures)
    print(f"\n{done} cases in {wall:.0f} s with {args.workers} workers; failures: {n_bad}; "
          f"refused by the rANS decoder itself: {sum(rans_refused.values())}; "
          f"slowest decode {slowest[0]:.2f} s ({slowest[1]}); peak worker RSS {peak:.0f} MB")
    result = {
        "what": "semlib.codec.decode on mutated .semc files (scripts/fuzz_decode.py)",
        "model": "tiny, random weights (seed 0, modulations N(0, 0.3)); no trained checkpoint exists yet",
        "seed_files": {k: len(v) for k, v in seeds.items()},
        "args": vars(args) | {"only": args.only},
        "cases": done, "wall_s": round(wall, 1), "failures": failures,
        "counts": {k: dict(c) for k, c in counts.items()},
        "format_error_messages": {k: dict(c.most_common(8)) for k, c in messages.items()},
        "decoded_examples": decoded_examples,
        "refused_by_rans_decoder": dict(rans_refused) | {"all": sum(rans_refused.values())},
        "slowest_decode_s": round(slowest[0], 3), "slowest_case": slowest[1],
        "peak_worker_rss_mb": round(peak, 1), "platform": platform_info(),
        "markdown": table,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
