"""The benchmarks (semlib.bench, scripts/benchmarks.py): the quick path runs end to end and
reports every figure; items run in their own process; the markdown keeps hand-written
text. No timing is asserted -- only that the numbers exist and are positive."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from experiments import benchmarks as bench
from semlib import data


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_report(tiny_ckpt, photo_paths):
    """The quick path on a tiny scale: tiny weights, one photo (in place of Kodak), one run,
    one small size, JPEG only, in this process (a fresh process per item costs seconds each)."""
    return bench.codec_benchmarks(checkpoint=tiny_ckpt, threads=1, images=1, repeats=1, sizes=(0.05,),
                                  codecs=("jpeg",), gamma=256.0, isolate=False, log=lambda msg: None,
                                  folder=photo_paths[0].parent)


def test_the_quick_path_reports_every_figure(quick_report, photo_paths):
    r = quick_report
    assert {"cpu", "cores", "threads", "torch", "date", "load_average"} <= set(r["machine"])
    assert r["machine"]["threads"] == 1 and "checkpoint" in r["weights"]
    ours = r["kodak"]["ours"]
    first = sorted(p.stem for p in photo_paths)[0]      # the first image of the folder
    assert r["kodak"]["images"] == [first] and ours["gamma"] == 256.0
    for key in ("encode_s", "decode_s", "bpp", "encode_peak_mib", "decode_peak_mib", "model_load_s"):
        assert positive(ours[key]), key
    cam = r["kodak"]["gradcam"]
    assert positive(cam["seconds"]) and positive(cam["first_call_s"]) and positive(cam["peak_mib"])
    jpeg = r["kodak"]["classic"]["jpeg"]
    assert "libjpeg" in jpeg["version"]
    for key in ("encode_s", "decode_s", "bpp", "psnr", "peak_mib"):
        assert positive(jpeg[key]), key
    assert jpeg["ours_over_theirs"]["encode"] == pytest.approx(ours["encode_s"] / jpeg["encode_s"])
    assert set(r["targets"]) == {"encode_s", "decode_s", "gradcam_s"}
    for t in r["targets"].values():
        assert positive(t["measured_s"]) and t["met"] == (t["measured_s"] <= t["target_s"])


def test_the_scaling_rows_and_the_profile(quick_report):
    (row,) = quick_report["scaling"]
    assert (row["height"], row["width"]) == bench.scaled_size(0.05) and "error" not in row
    for key in ("encode_s", "decode_s", "bpp", "encode_peak_mib", "decode_peak_mib"):
        assert positive(row[key]), key
    stages = quick_report["profile"]["stages"]
    assert set(stages) == {"encode", "decode", "gradcam"}
    for st in stages.values():
        assert positive(st["total_s"]) and sum(st["parts"].values()) == pytest.approx(st["total_s"])
    assert positive(stages["decode"]["parts"]["rANS decode (semlib.entropy.rans_decode, numba)"])
    assert positive(stages["encode"]["parts"]["bottom-up network (encoder)"])
    top = quick_report["profile"]["top"]["decode"]
    assert top and all(row["own_s"] >= 0 and row["calls"] > 0 for row in top)
    assert all(row["function"] for row in top)
    for what in ("encode", "decode"):
        parts = quick_report["profile"]["network"][what]
        assert any("latent blocks" in k for k in parts) and all(v >= 0 for v in parts.values())
    assert any("encoder" in k for k in quick_report["profile"]["network"]["encode"])
    assert not any("encoder" in k for k in quick_report["profile"]["network"]["decode"])


def test_the_markdown_shows_targets_tables_and_profile(quick_report):
    md = bench.markdown_report(quick_report)
    assert "| encode | <= 0.4 s |" in md and "| decode | <= 0.2 s |" in md and "| Grad-CAM | <= 0.1 s |" in md
    h, w = bench.scaled_size(0.05)
    assert f"| {h} x {w} |" in md and "### Where the time goes" in md and "| jpeg (Pillow" in md
    assert "after the last latent" in md
    assert quick_report["machine"]["cpu"] in md


def test_the_generated_section_is_replaced_and_hand_written_text_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    bench.update_markdown(path, "first figures\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks") and "first figures" in text
    path.write_text(text.replace("# Benchmarks\n", "# Benchmarks\n\nWritten by hand.\n") + "\nA footnote.\n")
    bench.update_markdown(path, "second figures\n")
    text = path.read_text()
    assert "second figures" in text and "first figures" not in text
    assert "Written by hand." in text and text.rstrip().endswith("A footnote.")
    assert text.count(bench.GENERATED_BEGIN) == 1 and text.count(bench.GENERATED_END) == 1


def test_sizes_and_the_mosaic_of_photo_tiles(tmp_path, photo_paths):
    for mp in bench.SCALES_MP:
        h, w = bench.scaled_size(mp)
        assert h % 16 == 0 and w % 16 == 0 and abs(h * w / 1e6 / mp - 1) < 0.05 and w / h == pytest.approx(1.5, abs=0.02)
    coffee = data.load_image(photo_paths[1])                                # 400 x 600
    portrait = tmp_path / "portrait.png"                                    # the rocket turned upright, 640 x 427
    Image.fromarray(np.ascontiguousarray(np.rot90(data.load_image(photo_paths[2]), -1))).save(portrait)
    m = bench.mosaic(600, 1000, [photo_paths[1], portrait])
    assert m.shape == (600, 1000, 3) and m.dtype == np.uint8
    assert np.array_equal(m[:400, :600], coffee)
    assert np.array_equal(m[:400, 600:], np.rot90(data.load_image(portrait))[:400, :400])
    assert np.array_equal(m[400:, :600], coffee[:200])                    # the next row starts over


def test_an_item_runs_in_its_own_process_and_memory_failures_are_reported(tmp_path, photo_paths, tiny_ckpt):
    crop = data.load_image(photo_paths[1])[:256, :384]
    Image.fromarray(crop).save(tmp_path / "crop.png")
    task = {"kind": "classic", "codec": "jpeg", "images": [{"path": str(tmp_path / "crop.png")}], "bpp": [1.0],
            "repeats": 1, "threads": 1}
    res = bench.run_isolated(task, timeout=120)
    assert res["isolated"] and "error" not in res, res
    assert res["peak_mib"] >= res["base_mib"] > 0 and positive(res["encode_seconds"][0][0])
    assert abs(res["bpp"][0] - 1.0) < 0.05                        # matched to the asked rate
    # an item that needs more memory than its limit ends with an error, not a dead machine
    big = {"kind": "encode", "checkpoint": str(tiny_ckpt), "gamma": 256.0, "repeats": 1, "threads": 1,
           "images": [{"mosaic": [2048, 3072], "paths": [str(photo_paths[1])]}],
           "out_dir": str(tmp_path), "warmup": False, "memory_limit_gib": 0.05}
    res = bench.run_isolated(big, timeout=120)
    assert "error" in res and "memory" in res["error"], res


def test_gpu_estimates_scale_with_the_work_and_the_datasheet():
    flops = bench.training_flops_per_pixel("tiny", 64)
    assert flops > 1e3
    rows = bench.gpu_training_estimates(steps=1000, batch=4, crop=64, config="tiny")
    assert [r["device"] for r in rows] == list(bench.GPU_PEAK_FLOPS)     # no measured CPU rate for tiny
    t4, a100 = (r["hours"] for r in rows)
    assert t4[0] < t4[1] and a100[1] == pytest.approx(t4[1] * 65 / 312)
    assert t4[1] == pytest.approx(1000 * 4 * 64 * 64 * flops / (65e12 * 0.05) / 3600, rel=1e-6)
    doubled = bench.gpu_training_estimates(steps=2000, batch=4, crop=64, config="tiny")
    assert doubled[0]["hours"][0] == pytest.approx(2 * t4[0])
    assert "assumed" in rows[0]["basis"]


def test_durations_print_in_a_unit_that_keeps_their_digits():
    from semlib.bench import format_hours

    assert format_hours(8.6, 8.6) == "8.6 h"
    assert format_hours(1.2, 3.0) == "1.2 - 3.0 h"
    assert format_hours(4 / 60, 23 / 60) == "4.0 - 23 min"
    # the A100 row of notebook 05 once read "0 - 2 min"
    assert format_hours(0.3 / 60, 1.6 / 60) == "0.3 - 1.6 min"
    assert format_hours(40 / 3600) == "40 s"
    assert format_hours(0.5, 0.5) == "30 min"
    with pytest.raises(ValueError, match="0 <= lo <= hi"):
        format_hours(2.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        format_hours(float("nan"))


def test_contention_is_the_other_processes_cpu_time_not_the_load_average():
    assert bench.other_cores((100.0, 10.0), (130.0, 30.0), 20.0) == pytest.approx(0.5)   # 30 s busy, 20 ours
    assert bench.other_cores((100.0, 10.0), (110.0, 20.5), 10.0) == 0.0                  # clock ticks vs rusage
    assert bench.other_cores(None, (1.0, 1.0), 1.0) is None
    # a 2-thread benchmark raises the load average by itself: the end load does not count
    assert not bench.busy({"cores": 2, "load_average": 0.9, "load_average_end": 1.9})
    assert bench.busy({"cores": 2, "load_average": 2.5})
    assert bench.busy({"cores": 2, "load_average": 0.1, "other_cores": 0.9})
    assert not bench.busy({"cores": 2, "load_average": 3.0, "other_cores": 0.05})
    start = bench.cpu_seconds()
    if start is not None:                                   # Linux: this process's own work is not "other"
        sum(i * i for i in range(2_000_000))
        assert start[1] <= bench.cpu_seconds()[1]


def test_publish_writes_the_json_and_the_generated_section(tmp_path, capsys):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nby hand\n")
    bench.publish({"a": 1}, "the section", tmp_path / "out" / "r.json", md)
    assert json.loads((tmp_path / "out" / "r.json").read_text()) == {"a": 1}
    text = md.read_text()
    assert "by hand" in text and "the section" in text
    bench.publish({"a": 2}, "new section", None, md)
    assert "new section" in md.read_text() and "the section" not in md.read_text()
    assert "the section" in capsys.readouterr().out
