"""Entropy coding of the latents: the scale table, a bounds-checked rANS decoder, and the
side information that makes a file decode the same on every CPU (docs: ROBUSTNESS.md).

**The scale table.** Each latent symbol is coded with the discretised Gaussian whose scale
is the first of 64 fixed scales (``SCALE_TABLE``) at or above the prior's sigma
(compressai's ``GaussianConditional.build_indexes``): the table *index* is
``#{j < 63 : sigma > SCALE_TABLE[j]}``.

**Why files failed on other CPUs, and the fix.** The decoder recomputes sigma with the
same network, but in float32 on another instruction set (AVX2 instead of AVX-512, or
ATen's scalar kernels), or another thread count, the last bits differ: measured on the
shipped model over three Kodak images, |delta log sigma| <= 2.7e-6 under every setting of
``ONEDNN_MAX_CPU_ISA`` x ``ATEN_CPU_CAPABILITY`` tried. A symbol whose sigma lies that
close to a table boundary gets another index, another CDF, and the rANS decoder loses
its way (4 of 18 cross-ISA decodes failed before this). So the encoder lists the
*fragile* symbols, those whose log sigma is within ``delta`` (2**-16 by default, 5.7 x
the largest difference measured) of a boundary, and sends for each the side of the
boundary it used: one bit. The decoder takes these symbols' indexes from the list and
computes every other index itself; as long as its sigma is within ``delta`` of the
encoder's, every index agrees. About 1 symbol in 6,000 is fragile (42 of 259,584 for
a Kodak image at delta 1e-5), so the list costs about 0.2 % of a file.

A CRC-32 of all decoded symbols, stored in the file, tells the rare case where the
arithmetic differs by more than ``delta`` apart from a damaged file.

**The decoder.** compressai's C++ rANS decoder trusts its input and reads past the end of
a corrupted string; :func:`rans_decode` reads the same format with every read
bounds-checked, in a loop compiled with numba (4 ms for a Kodak image's 260k symbols, where
the plain Python decoder of format version 1's time took about 75 ms).
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager

import numpy as np
import torch

from semlib.semc import pack_sides, unpack_sides  # noqa: F401  (the lists' byte format lives with the file's)

SCALE_TABLE = torch.exp(torch.linspace(math.log(0.11), math.log(256.0), 64))
RANS64_L = 1 << 31      # lower bound of the 64-bit rANS state (ryg_rans' Rans64, as compressai uses it)
RANS_PRECISION = 16     # bits of the quantised CDFs
BYPASS_BITS = 4         # compressai codes values outside a table in 4-bit "bypass" nibbles
MAX_BYPASS_NIBBLES = 8  # an int32 needs at most 8 nibbles; more means the string is corrupt
FRAGILE_LOG2 = 16       # default delta = 2**-FRAGILE_LOG2 in log sigma (see the module docstring)

# log of the table boundaries as the comparisons in build_indexes see them (float32 values)
_LOG_BOUNDS = torch.log(SCALE_TABLE[:-1].float().double())


def build_indexes(conditional, scales: torch.Tensor) -> torch.Tensor:
    """The table index of every sigma, exactly as compressai's
    ``GaussianConditional.build_indexes`` computes it (the lower bound applied, then
    ``#{j < 63 : sigma > table[j]}``, NaN giving the last index), in one binary search
    instead of 63 passes over the tensor (tests/test_speed_exact.py checks that the two agree)."""
    scales = conditional.lower_bound_scale(scales)
    table = conditional.scale_table[:-1].to(device=scales.device, dtype=scales.dtype)
    indexes = torch.searchsorted(table, scales.contiguous(), right=False).int()
    return torch.where(torch.isnan(scales), torch.full_like(indexes, len(table)), indexes)


# --------------------------------------------------------------------------- fragile symbols


def nearest_boundary(scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every sigma: the index j of the nearest table boundary and the distance
    |log sigma - log SCALE_TABLE[j]| (float64). Crossing boundary j moves a symbol's table
    index between j and j + 1."""
    ls = scale.detach().double().log()
    b = _LOG_BOUNDS.to(ls.device)
    hi = torch.searchsorted(b, ls).clamp(max=len(b) - 1)
    lo = (hi - 1).clamp(min=0)
    d_hi, d_lo = (ls - b[hi]).abs(), (ls - b[lo]).abs()
    use_hi = d_hi <= d_lo
    return torch.where(use_hi, hi, lo), torch.where(use_hi, d_hi, d_lo)


def fragile_sides(scale: torch.Tensor, indexes: torch.Tensor, log2_delta: int = FRAGILE_LOG2):
    """The encoder's side information for one image's latent: (positions, bits) of the
    symbols within 2**-log2_delta of a boundary, positions in C order of ``scale``, bit 1
    when the encoder's index is above the boundary."""
    j, dist = nearest_boundary(scale)
    pos = torch.nonzero((dist < 2.0 ** -log2_delta).reshape(-1)).reshape(-1)
    bits = indexes.reshape(-1)[pos].long() == j.reshape(-1)[pos] + 1
    return pos.cpu().numpy().astype(np.int64), bits.cpu().numpy().astype(np.uint8)


def apply_sides(scale: torch.Tensor, indexes: torch.Tensor, positions: np.ndarray, bits: np.ndarray) -> torch.Tensor:
    """The decoder's indexes: its own, except at the listed fragile symbols, where the side
    of the nearest boundary comes from the file. Raises ValueError for positions out of range."""
    if len(positions) == 0:
        return indexes
    if positions.max() >= indexes.numel():
        raise ValueError(f"a fragile-symbol position ({int(positions.max())}) is beyond the "
                         f"{indexes.numel()} symbols of its latent")
    pos = torch.from_numpy(positions).to(indexes.device)
    j, _ = nearest_boundary(scale.reshape(-1)[pos])
    out = indexes.reshape(-1).clone()
    out[pos] = (j + torch.from_numpy(bits.astype(np.int64)).to(j.device)).to(out.dtype)
    return out.reshape(indexes.shape)


def symbols_crc(symbols, crc: int = 0) -> int:
    """CRC-32 of integer symbols as little-endian int32, continuing from ``crc``."""
    a = symbols.cpu().numpy() if isinstance(symbols, torch.Tensor) else np.asarray(symbols)
    return zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)


# --------------------------------------------------------------------------- coding threads

CODING_THREADS = 1              # CPU threads of the coding passes of format version 1 files (see coding_threads)


@contextmanager
def coding_threads(device: torch.device, threads: int | None = None):
    """Run the enclosed computation on ``threads`` CPU threads (None: leave the caller's
    setting), then restore the caller's setting.

    Some oneDNN kernels (1x1 convolutions on channels-last inputs, measured with torch
    2.14) split their sums differently with another number of threads, so the same network
    gives results that differ in the last bits. Files of format version 2 carry side
    information that makes such differences harmless (:mod:`semlib.entropy`), so they are
    coded on any thread count; files of version 1 need the decoder to repeat the encoder's
    arithmetic exactly and were written on ``CODING_THREADS`` threads.
    (``torch.set_num_threads`` is process-wide: do not code concurrently from Python
    threads that set other counts.)
    """
    n = torch.get_num_threads()
    if threads is None or device.type != "cpu" or n == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --------------------------------------------------------------------------- rANS decoding


# Error codes of the decoder, and their messages.
_ERRORS = {
    1: "the string ends before its last symbol",
    2: "an escaped value is longer than 32 bits",
    3: "bytes are left over after the last symbol",
    4: "the string does not end in the encoder's initial state (corrupted)",
}


# Long: one numba-compiled loop; splitting it would cost a call per symbol.
def _decode_kernel(words, indexes, cdfs, cdf_lengths, offsets, out):
    """Decode the symbols of ``indexes`` from the 32-bit ``words`` into ``out``; returns 0,
    or an error code of _ERRORS. Plain Python on numpy arrays, so that numba compiles it.
    The 64-bit state is held in a uint64 (it stays below 2**63 between symbols)."""
    n_words = words.shape[0]
    low = np.uint64(RANS64_L)
    mask = np.uint64((1 << RANS_PRECISION) - 1)
    x = np.uint64(words[0]) | (np.uint64(words[1]) << np.uint64(32))
    pos = 2
    for i in range(indexes.shape[0]):
        j = indexes[i]
        top = cdf_lengths[j] - 2
        cum = np.int64(x & mask)
        lo, hi = 0, top + 1                      # bisect_right(cdf, cum, 0, top + 2) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cdfs[j, mid] <= cum:
                lo = mid
            else:
                hi = mid - 1
        s = lo
        start = cdfs[j, s]
        x = np.uint64(cdfs[j, s + 1] - start) * (x >> np.uint64(RANS_PRECISION)) + np.uint64(cum - start)
        if x < low:
            if pos == n_words:
                return 1
            x = (x << np.uint64(32)) | np.uint64(words[pos])
            pos += 1
        if s == top:
            count, raw, k = 0, 0, -1
            while True:
                val = np.int64(x & np.uint64(0xF))
                x >>= np.uint64(BYPASS_BITS)
                if x < low:
                    if pos == n_words:
                        return 1
                    x = (x << np.uint64(32)) | np.uint64(words[pos])
                    pos += 1
                if k < 0:
                    count += val
                    if count > MAX_BYPASS_NIBBLES:
                        return 2
                    if val == 0xF:
                        continue
                    if count == 0:
                        break
                    k = 0
                    continue
                raw |= val << (BYPASS_BITS * k)
                k += 1
                if k == count:
                    break
            if raw >= 1 << 31:
                return 2
            s = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + top
        out[i] = s + offsets[j]
    if pos != n_words:
        return 3
    if x != low:
        return 4
    return 0


try:
    import numba
except ImportError:             # numba is a dependency; without it, the plain Python loop
    _compiled = None
else:
    _compiled = numba.njit(cache=True, nogil=True)(_decode_kernel)


def table_arrays(entropy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CDF tables as int64 arrays (cdfs padded, lengths, offsets) for :func:`rans_decode`."""
    return (entropy._quantized_cdf.to(torch.int64).numpy(), entropy._cdf_length.reshape(-1).to(torch.int64).numpy(),
            entropy._offset.reshape(-1).to(torch.int64).numpy())


def rans_decode(data: bytes, indexes: np.ndarray, arrays, compiled: bool = True) -> np.ndarray:
    """Decode one latent string written by compressai's ``RansEncoder`` (the encoder of
    ``GaussianConditional``), with every read bounds-checked.

    compressai's own C++ decoder trusts its input: on a short or corrupted string it reads
    past the end of the buffer (a segfault, or values taken from unrelated memory). This
    decoder reads the same format and gives the same symbols for every valid string
    (``tests/test_fuzz.py`` checks it against compressai's), and raises ``ValueError`` when
    the string is shorter than its symbols need, leaves bytes over, or does not end in the
    state the encoder starts from (``RANS64_L``, a 64-bit value that garbage almost never
    reproduces). Its work is linear in ``len(indexes) + len(data)``.

    ``indexes``: the table index of every symbol, in coding order; ``arrays``: from
    :func:`table_arrays`. Returns the integer symbols (the table offset added), int64.
    The loop is compiled with numba (``compiled=False``, or numba missing: the same loop
    in plain Python, some 100x slower).
    """
    indexes = np.ascontiguousarray(indexes, dtype=np.int64)
    cdfs, lengths, offsets = arrays
    if indexes.size and (indexes.min() < 0 or indexes.max() >= len(lengths)):
        raise ValueError("a table index is out of range")
    if len(data) < 8 or len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a rANS stream (a whole number of 32-bit words, at least 2)")
    words = np.frombuffer(bytes(data), "<u4").astype(np.uint32)
    out = np.empty(indexes.shape[0], np.int64)
    kernel = _compiled if compiled and _compiled is not None else _decode_kernel
    code = kernel(words, indexes, cdfs, lengths, offsets, out)
    if code:
        raise ValueError(_ERRORS[code])
    return out
