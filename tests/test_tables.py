"""The paper's claims are kept as cited data, and the comparison tables never fill a cell
with a number that was not looked up or measured: interpolation stays inside a curve,
methods that cannot run here say so, the project's model says "pending" until trained."""

import numpy as np
import pytest

from semlib import tables
from semlib.evaluate import load_anchors
from semlib.tables import NOT_MEASURED, PENDING, Claim

def curve(bpp, psnr, ms_ssim=None, name="c"):
    r = {"bpp": list(bpp), "psnr-rgb": list(psnr)}
    if ms_ssim is not None:
        r["ms-ssim-rgb"] = list(ms_ssim)
    return {"name": name, "results": r}


def test_every_table_holds_one_rate_one_dataset_per_row_group_and_cites_its_cell():
    for t in (1, 2, 3):
        cl = tables.claims(t)
        assert len({(c.dataset, c.bpp) for c in cl}) == 1
        assert cl[-1].method == tables.OWN_METHOD     # the paper's method is the last row
    assert {c.bpp for c in tables.claims(1)} | {c.bpp for c in tables.claims(2)} | {c.bpp for c in tables.claims(3)} \
        == {1.12, 0.75, 1.25}
    t4 = tables.claims(4)
    assert {c.dataset for c in t4} == {"kodak", "tecnick", "clic2022"}
    assert [c.column for c in t4].count("Baseline") == 3 == [c.column for c in t4].count("Baseline+semantic")
    for c in (x for t in (1, 2, 3, 4) for x in tables.claims(t)):
        assert f"Table {c.table}" in c.citation and c.row in c.citation
        assert 20 < c.psnr < 50 and 0.9 < c.ms_ssim < 1.0
    with pytest.raises(ValueError, match="Tables 1-4"):
        tables.claims(5)


def test_value_at_interpolates_inside_the_curve_and_never_extrapolates():
    c = curve([1.0, 0.5, 2.0], [34.0, 30.0, 38.0], [0.98, 0.96, 0.99])  # unsorted on purpose
    assert tables.value_at(c, 0.5) == 30.0
    assert tables.value_at(c, 0.75) == pytest.approx(32.0)
    assert tables.value_at(c, 1.5, "ms-ssim-rgb") == pytest.approx(0.985)
    assert tables.value_at(c, 0.49) is None and tables.value_at(c, 2.01) is None
    assert tables.value_at(curve([0.5, 1.0], [30, 34]), 0.7, "ms-ssim-rgb") is None


def test_rate_at_inverts_value_at():
    c = curve([0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.0])
    for bpp in (0.25, 0.4, 1.0, 1.7):
        assert tables.rate_at(c, tables.value_at(c, bpp)) == pytest.approx(bpp)
    assert tables.rate_at(c, 27.9) is None and tables.rate_at(c, 37.1) is None


def test_at_target_reads_the_row_of_that_target():
    r = {"results": {"target_bpp": [0.75, 1.12], "bpp": [0.751, 1.118], "psnr-rgb": [31.0, 33.0],
                     "ms-ssim-rgb": [0.97, None]}}
    assert tables.at_target(r, 1.12, "psnr-rgb") == 33.0
    assert tables.at_target(r, 1.12, "bpp") == 1.118
    assert tables.at_target(r, 1.12, "ms-ssim-rgb") is None
    assert tables.at_target(r, 1.25, "psnr-rgb") is None


def test_best_published_picks_the_highest_curve_covering_the_rate():
    anchors = {"low": curve([0.1, 2.0], [25, 35]), "high": curve([0.1, 2.0], [27, 37]),
               "short": curve([0.1, 0.5], [40, 41])}
    assert tables.best_published(anchors, 1.0) == ("high", pytest.approx(27 + 10 * 0.9 / 1.9))
    assert tables.best_published(anchors, 0.3)[0] == "short"
    assert tables.best_published(anchors, 3.0) is None


def test_methods_without_code_are_never_filled_in():
    anchors = {"jpeg": curve([0.5, 2.0], [30, 36])}
    row = tables.comparison_row(Claim(1, "TCM", "PSNR / MS-SSIM", "TCM", "kodak", 1.12, 39.5, 0.994),
                                anchors, {"jpeg": anchors["jpeg"]})
    assert row["measured here: curve"] == NOT_MEASURED == row["measured here: encoded at bpp"]
    assert row["curve_psnr"] is None and row["enc_psnr"] is None and row["anchor_psnr"] is None
    assert "39.5" in row["paper (claim)"] and "claim" in row["paper (claim)"]


def test_the_projects_model_is_pending_until_it_has_results():
    claim = tables.claims(1)[-1]
    row = tables.comparison_row(claim, {}, {}, {})
    assert row["measured here: curve"] == PENDING == row["measured here: encoded at bpp"]
    learned = curve([0.5, 1.5], [31.0, 35.0], [0.97, 0.99])
    enc = {"meta": {"num_images": 2},
           "results": {"target_bpp": [1.12], "bpp": [1.121], "psnr-rgb": [33.5], "ms-ssim-rgb": [0.98]}}
    row = tables.comparison_row(claim, {}, {"semlib": learned}, {"semlib": enc})
    assert row["curve_psnr"] == pytest.approx(31 + 4 * 0.62)
    assert row["enc_psnr"] == 33.5 and "1.121 bpp (2 images)" in row["measured here: encoded at bpp"]
    assert f"{40.1 - 33.5:+.2f} dB" in row["what differs"]
    enc["results"]["bpp"] = [0.97]      # the rate control could not reach the target: no number "at" 1.12 bpp
    row = tables.comparison_row(claim, {}, {"semlib": learned}, {"semlib": enc})
    assert row["enc_psnr"] is None and row["measured here: encoded at bpp"].startswith("target 1.12 bpp not reached")
    assert f"{40.1 - row['curve_psnr']:+.2f} dB" in row["what differs"]


def test_rows_compare_claim_published_and_measured_at_the_claims_rate():
    anchors = load_anchors("kodak")
    jpeg = tables.claims(1)[0]
    measured = curve([1.0, 1.2], [33.0, 34.0], [0.98, 0.99])
    row = tables.comparison_row(jpeg, anchors, {"jpeg": measured})
    assert row["anchor_psnr"] == pytest.approx(tables.value_at(anchors["jpeg"], 1.12))
    assert row["curve_psnr"] == pytest.approx(33.6)
    assert row["measured here: encoded at bpp"] == "not run here"
    assert f"{jpeg.psnr - 33.6:+.2f} dB" in row["what differs"]
    elic = next(c for c in tables.claims(3) if c.method == "ELIC")   # the ELIC curve ends below 1.25 bpp
    row = tables.comparison_row(elic, anchors)
    assert row["anchor_psnr"] is None and "not extrapolated" in row["published anchor"]


def test_comparison_rows_add_context_after_each_dataset_group():
    anchors = {"kodak": load_anchors("kodak"), "tecnick": load_anchors("tecnick"), "clic2022": load_anchors("clic2022")}
    hevc = {"name": "hevc", "meta": {"dataset": "tecnick", "num_images": 1}, **curve([0.5, 1.0], [38, 41])}
    rows = tables.comparison_rows(tables.claims(4), anchors, {"tecnick": {"hevc": hevc}}, measured_context=("hevc",))
    methods = [r["method"] for r in rows]
    assert len(rows) == 6 + 3 * len(tables.CONTEXT_ANCHORS) + 1
    assert methods[0].startswith("Baseline (Kodak") and "context" in methods[2]
    ctx = next(r for r in rows if "measured here" in r["method"])
    assert ctx["bpp"] == 0.846 and ctx["curve_psnr"] == pytest.approx(38 + 3 * 0.346 / 0.5)


def test_claim_gaps_measure_claims_against_the_best_published_curve():
    anchors = {"kodak": {"a": curve([0.5, 1.0], [35, 38]), "b": curve([0.5, 1.0], [36, 36.6])}}
    c = Claim(2, "X", "PSNR / MS-SSIM", "X", "kodak", 0.75, 40.1, 0.996)
    (g,) = tables.claim_gaps([c], anchors)
    assert g["best_published"] == "a" and g["best_value"] == pytest.approx(36.5)
    assert g["gap"] == pytest.approx(3.6)
    (g,) = tables.claim_gaps([c], {"kodak": {}})
    assert g["gap"] is None


def test_markdown_has_a_header_a_rule_and_one_line_per_row_with_pipes_escaped():
    md = tables.markdown([{"a": "x|y", "b": 1.23456}, {"a": None}], columns=("a", "b"))
    lines = md.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "| --- | --- |"
    assert lines[2] == "| x\\|y | 1.235 |" and lines[3] == "| — | — |"


def test_sweep_gives_the_numbers_of_evaluate_codec():
    from semlib.data import sample_image
    from semlib.evaluate import evaluate_codec

    images = {"astronaut": np.ascontiguousarray(sample_image("astronaut")[40:216, 150:342]),
              "chelsea": np.ascontiguousarray(sample_image("chelsea")[60:236, 100:292])}
    light = tables.sweep("jpeg", images, [20, 80], dataset="tiny")
    full = evaluate_codec("jpeg", images, qualities=[20, 80], importance="uniform", dataset="tiny", progress=False)
    for k in ("bpp", "psnr-rgb", "ms-ssim-rgb"):
        assert light["results"][k] == pytest.approx(full["results"][k], rel=1e-6), k
        assert light["per_image"]["chelsea"][k] == pytest.approx(full["per_image"]["chelsea"][k], rel=1e-6)
    assert light["results"]["bpp"][0] < light["results"]["bpp"][1]
    assert light["meta"]["num_images"] == 2 and light["meta"]["dataset"] == "tiny"
    with pytest.raises(ValueError, match="quality"):
        tables.sweep("jpeg", images, [101])


def test_important_window_finds_the_brightest_square():
    g = np.zeros((60, 80), np.float32)
    g[20:30, 50:60] = 1.0
    assert tables.important_window(g, 10) == (20, 50)
    top, left = tables.important_window(g, 16)
    assert top <= 20 and top + 16 >= 30 and left <= 50 and left + 16 >= 60
    assert tables.important_window(np.ones((8, 8)), 8) == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        tables.important_window(g, 61)


def fixed_point(bpp, psnr, ms_ssim=None, si_ssim=None, gamma=128.0, n=24):
    r = {"quality": [gamma], "bpp": [bpp], "psnr-rgb": [psnr], "ms-ssim-rgb": [ms_ssim], "si-ssim": [si_ssim]}
    return {"name": "fixed", "meta": {"num_images": n}, "results": r}


def test_slope_at_reads_the_segment_around_the_rate_and_refuses_far_outside():
    c = curve([0.5, 1.0, 2.0], [30.0, 33.0, 35.0])
    assert tables.slope_at(c, 0.7) == pytest.approx(6.0)
    assert tables.slope_at(c, 1.5) == pytest.approx(2.0)
    assert tables.slope_at(c, 2.3) == pytest.approx(2.0)      # within half the last segment
    assert tables.slope_at(c, 3.0) is None and tables.slope_at(c, 0.1) is None
    assert tables.slope_at(curve([1.0], [33.0]), 1.0) is None


def test_ablation_difference_corrects_the_psnr_gap_by_the_reference_slope():
    base = fixed_point(1.20, 34.0, 0.980, 0.930)
    sem = fixed_point(1.30, 34.1, 0.985, 0.940)
    ref = curve([1.0, 1.5], [33.0, 35.0])                          # 4 dB per bpp
    d = tables.ablation_difference(base, sem, ref)
    assert d["bpp"] == pytest.approx(0.10) and d["psnr"] == pytest.approx(0.10)
    assert d["ms_ssim"] == pytest.approx(0.005) and d["si_ssim"] == pytest.approx(0.010)
    # 0.1 bpp more is worth 0.4 dB on the reference: at equal rate the semantic model is 0.3 dB behind
    assert d["slope"] == pytest.approx(4.0) and d["psnr_at_equal_rate"] == pytest.approx(-0.30)
    d = tables.ablation_difference(base, fixed_point(1.30, 34.1), None)
    assert d["ms_ssim"] is None and d["psnr_at_equal_rate"] is None


def test_fixed_vs_variable_compares_at_the_same_gamma_and_at_the_same_bpp():
    var = {"name": "v", "results": {"quality": [32, 128, 512], "bpp": [0.8, 1.2, 1.7], "psnr-rgb": [32.0, 34.0, 35.0]}}
    fixed = {128: fixed_point(1.0, 33.5), 32: fixed_point(0.6, 31.0, gamma=32)}
    rows = tables.fixed_vs_variable(var, fixed)
    assert [r["gamma"] for r in rows] == [32, 128]
    r32, r128 = rows
    assert r128["variable_same_gamma"] == 34.0 and r128["variable_bpp_same_gamma"] == 1.2
    assert r128["variable_at_fixed_bpp"] == pytest.approx(33.0) and r128["gap"] == pytest.approx(-0.5)
    assert r32["variable_at_fixed_bpp"] is None and r32["gap"] is None    # 0.6 bpp is below the curve: no extrapolation
    with pytest.raises(ValueError, match="no psnr-rgb"):
        tables.point({"name": "empty", "results": {"bpp": []}})


def test_a_fixed_rate_baseline_is_shown_as_its_own_point_not_at_the_tables_rate():
    baseline = next(c for c in tables.claims(4) if c.method == "Baseline" and c.dataset == "kodak")
    row = tables.comparison_row(baseline, {}, {}, {})
    assert row["measured here: curve"] == PENDING
    row = tables.comparison_row(baseline, {}, {}, {}, points={"semlib-baseline": fixed_point(1.203, 34.1, 0.985)})
    assert row["measured here: curve"] == "34.10 dB / 0.9850 at 1.203 bpp (fixed-rate model, its own rate; 24 images)"
    assert row["curve_psnr"] is None and "one rate" in row["measured here: encoded at bpp"]


# ---------------------------------------------------------------------------------------
# Which weights a results file measured


def test_fingerprint_check_tells_matching_stale_and_unknown_files_apart():
    files = {"a.json": {"meta": {"model_fingerprint": "00ff"}}, "b.json": {"meta": {"model_fingerprint": "1234"}},
             "c.json": {"meta": {"date": "2026-12-01T08:00:00+00:00"}}}
    rows = tables.fingerprint_check(files, "00FF")
    assert [r["status"] for r in rows] == ["matches", "differs", tables.FINGERPRINT_UNKNOWN]
    note = tables.fingerprint_note(rows, "00ff")
    assert "`a.json`: measured with the model loaded here" in note
    assert "**Stale**: `b.json`" in note and "`1234`" in note
    assert "**Model unknown**: `c.json`" in note and "2026-12-01" in note
    only_ok = tables.fingerprint_note(rows[:1], "00ff")
    assert "Stale" not in only_ok and "unknown" not in only_ok


def test_model_fingerprint_is_that_of_the_checkpoints_weights(tiny_ckpt):
    from semlib.models import fingerprint, load_model

    assert tables.model_fingerprint(tiny_ckpt) == fingerprint(load_model(tiny_ckpt)).hex()


# ---------------------------------------------------------------------------------------
# ROI coding against uniform gamma at equal rate


def target_results(name, targets, per_image):
    """A target-bpp results dict from per-image values {image: {metric: [value per target]}}."""
    keys = next(iter(per_image.values())).keys()
    res = {"target_bpp": list(targets)}
    res.update({k: [float(np.mean([per_image[n][k][j] for n in per_image])) for j in range(len(targets))] for k in keys})
    return {"name": name, "meta": {"num_images": len(per_image)}, "results": res, "per_image": per_image}


def roi_pair():
    u = {"a": {"bpp": [0.75, 1.0], "psnr-roi20": [30.0, 32.0], "si-ssim": [0.90, 0.93], "ms-ssim-rgb": [0.97, 0.98],
               "psnr-rgb": [33.0, 35.0]},
         "b": {"bpp": [0.75, 1.0], "psnr-roi20": [31.0, 33.0], "si-ssim": [0.91, 0.94], "ms-ssim-rgb": [0.97, 0.98],
               "psnr-rgb": [34.0, 36.0]}}
    r = {"a": {"bpp": [0.76], "psnr-roi20": [31.5], "si-ssim": [0.92], "ms-ssim-rgb": [0.96], "psnr-rgb": [32.0]},
         "b": {"bpp": [0.74], "psnr-roi20": [30.5], "si-ssim": [0.915], "ms-ssim-rgb": [0.975], "psnr-rgb": [33.5]}}
    return target_results("uniform", [0.75, 1.0], u), target_results("roi", [0.75], r)


def test_roi_vs_uniform_compares_at_the_targets_both_hold_image_by_image():
    uniform, roi = roi_pair()
    rows = tables.roi_vs_uniform(uniform, roi)
    assert len(rows) == 1 and rows[0]["target"] == 0.75 and rows[0]["images"] == 2   # 1.0 bpp: no ROI result
    u, r, d = rows[0]["psnr-roi20"]
    assert (u, r) == pytest.approx((30.5, 31.0)) and d == pytest.approx(0.5)
    assert rows[0]["psnr-roi20 wins"] == (1, 2)          # higher on image a, lower on b
    assert rows[0]["psnr-rgb"][2] == pytest.approx(-0.75) and rows[0]["psnr-rgb wins"] == (0, 2)
    assert rows[0]["bpp_roi"] == pytest.approx(0.75)
    table = tables.roi_markdown(rows)
    assert len(table.splitlines()) == 3 and "30.50 → 31.00 (+0.50; 1/2)" in table


def test_roi_summary_says_where_roi_gains_and_where_it_loses():
    uniform, roi = roi_pair()
    text = tables.roi_summary(tables.roi_vs_uniform(uniform, roi))
    gains, loses = text.split(" and loses ")
    assert "top-20 % PSNR +0.50 dB (higher on 1 of 2 images)" in gains and "SI-SSIM +0.0125" in gains
    assert "whole-image PSNR -0.75 dB (higher on 0 of 2 images)" in loses and "MS-SSIM -0.0025" in loses
    assert "same Grad-CAM map" in text
    assert "no equal-rate comparison" in tables.roi_summary([])


def test_learned_results_reads_committed_files_or_measures_all_three(tmp_path, tiny_ckpt, photo):
    from semlib.evaluate import learned_codec

    files = {"curve": {"meta": {"num_images": 24}}, "encoded": {"x": 1}, "roi": {"y": 2}}
    got = tables.learned_results(None, None, [], [0.75], [0.75], committed=files)
    assert got["encoded"] is files["encoded"] and "committed" in got["source"] and "24" in got["source"]
    plain, roi = learned_codec(str(tiny_ckpt), gammas=(64, 1024)), learned_codec(str(tiny_ckpt), roi="auto",
                                                                                 allocation={"top": None})
    lo = float(np.mean(tables.sweep(plain, {"p": photo}, [64])["results"]["bpp"]))
    got = tables.learned_results(plain, roi, {"p": photo}, [lo * 1.5], [lo * 1.5], committed={**files, "roi": None},
                                 cache_dir=tmp_path)
    assert got["curve"]["results"]["quality"] == [64.0, 1024.0]
    assert got["encoded"]["results"]["target_bpp"] == [lo * 1.5] and got["encoded"]["results"]["si-ssim"][0] is not None
    assert got["roi"]["meta"]["codec"].endswith("-roi-k1") and "measured now on 1 Kodak image" in got["source"]
    assert got["roi"]["meta"]["model_fingerprint"] == tables.model_fingerprint(tiny_ckpt)


def test_encoded_row_reads_the_target_and_compares_with_the_claim():
    res = target_results("r", [0.75], {"a": {"bpp": [0.752], "psnr-rgb": [33.0], "ms-ssim-rgb": [0.97]}})
    claim = tables.claims(2)[-1]
    row = tables.encoded_row("variant", res, 0.75, "note", claim=claim)
    assert row["measured here: encoded at bpp"] == "33.00 dB / 0.9700 at 0.752 bpp (1 images)"
    assert row["what differs"] == f"note; claim − measured here: {claim.psnr - 33.0:+.2f} dB"
    assert tables.encoded_row("v", res, 1.12, "n")["measured here: encoded at bpp"] == "not encoded at this rate"


# ---------------------------------------------------------------------------------------
# The other helpers of notebook 06


def test_centre_crop_takes_the_middle_and_leaves_small_images_alone():
    a = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    assert np.array_equal(tables.centre_crop(a, 4), a[1:5, 2:6])
    assert tables.centre_crop(a, None) is a and tables.centre_crop(a, 10) is a


def test_sweep_sets_sweeps_every_codec_on_every_set():
    img = np.ascontiguousarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = tables.sweep_sets({"s1": {"x": img}, "s2": {"y": img}}, {"jpeg": (30, 60)}, labels={"s1": "set one"})
    assert set(out) == {"s1", "s2"} and out["s1"]["jpeg"]["results"]["quality"] == [30, 60]
    assert out["s1"]["jpeg"]["meta"]["dataset"] == "set one" and out["s2"]["jpeg"]["meta"]["images"] == ["y"]


def one_point(bpp, psnr, ms=0.97, si=0.9, n=24):
    return {"meta": {"num_images": n}, "results": {"bpp": [bpp], "psnr-rgb": [psnr], "ms-ssim-rgb": [ms], "si-ssim": [si]}}


def test_table4_measured_gives_two_models_and_their_difference_per_dataset():
    abl = {"baseline_beta0_gamma128": one_point(0.78, 30.7), "fixed_gamma128": one_point(0.88, 30.8, 0.98, 0.91),
           "baseline_beta0_gamma128-tecnick": one_point(0.5, 33.0, n=1)}     # no semantic model on Tecnick
    ref = curve([0.5, 1.0], [29.0, 31.0])
    rows, diffs = tables.table4_measured(abl, ref)
    assert set(diffs) == {"kodak"} and len(rows) == 3
    assert diffs["kodak"]["psnr"] == pytest.approx(0.1) and diffs["kodak"]["slope"] == pytest.approx(4.0)
    assert rows[2]["bpp here"] == "+0.100" and rows[2]["PSNR here (dB)"] == "+0.10; -0.30 at equal rate (estimate)"
    assert rows[0]["images"] == "Kodak (24 images)" and "40.34 dB" in rows[0]["paper (claim)"]


def test_fig15_markdown_tables_each_gamma_and_sums_up_the_gaps():
    rows = [{"gamma": 32, "fixed_bpp": 0.4, "fixed": 28.0, "variable_bpp_same_gamma": 0.8, "variable_same_gamma": 30.0,
             "variable_at_fixed_bpp": None, "gap": None},
            {"gamma": 128, "fixed_bpp": 0.9, "fixed": 30.8, "variable_bpp_same_gamma": 1.1, "variable_same_gamma": 31.6,
             "variable_at_fixed_bpp": 30.9, "gap": 0.1}]
    text = tables.fig15_markdown(rows)
    assert "| 32 | 0.400 bpp, 28.00 dB | 0.800 bpp, 30.00 dB | n/a | n/a |" in text
    assert "+0.10 to +0.10 dB" in text and "(1 of 2;" in text


def kodak_tables():
    anchors = load_anchors("kodak")
    hevc = curve([0.5, 0.8, 1.2], [33.0, 35.0, 37.5], [0.97, 0.98, 0.99], name="hevc")
    enc = {n: {"meta": {"num_images": 2}, "results": {"target_bpp": [1.12], "bpp": [1.121], "psnr-rgb": [v],
                                                      "ms-ssim-rgb": [0.98]}}
           for n, v in (("jpeg", 33.5), ("jpeg2000", 36.7), ("hevc", 37.9), ("semlib", 35.0))}
    t1 = tables.comparison_rows(tables.claims(1), {"kodak": anchors}, {"kodak": {"hevc": hevc}}, {"kodak": enc})
    return anchors, hevc, t1


def test_classical_notes_and_discrepancy_notes_print_the_numbers_they_compare():
    anchors, hevc, t1 = kodak_tables()
    notes = tables.classical_notes(t1, 1.12, 2)
    jpeg = next(r for r in t1 if r["method"].startswith("JPEG "))
    assert len(notes.splitlines()) == 3 and f"gives {jpeg['anchor_psnr']:.2f} dB" in notes and "33.50 dB / 0.9800" in notes
    own = [c for t in (1, 2, 3) for c in tables.claims(t) if c.method == tables.OWN_METHOD]
    gaps = tables.claim_gaps(own, {"kodak": anchors})
    text = tables.discrepancy_notes(anchors, {"hevc": hevc}, gaps, t1, 1.12)
    g2 = next(g for g in gaps if g["table"] == 2)
    assert f"**{g2['gap']:+.2f} dB**" in text
    rise = tables.value_at(hevc, 1.12) - tables.value_at(hevc, 0.75)
    assert f"HEVC measured here rises {rise:+.2f} dB" in text


def test_summary_markdown_has_one_line_per_claim_checked():
    anchors, hevc, t1 = kodak_tables()
    own = [c for t in (1, 2, 3) for c in tables.claims(t) if c.method == tables.OWN_METHOD]
    gaps = tables.claim_gaps(own, {"kodak": anchors})
    t2 = tables.comparison_rows(tables.claims(2), {"kodak": anchors})
    t3 = tables.comparison_rows(tables.claims(3), {"kodak": anchors})
    uniform, roi = roi_pair()
    text = tables.summary_markdown(t1, t2, t3, gaps, {}, tables.roi_vs_uniform(uniform, roi), anchors)
    lines = text.splitlines()
    g1 = next(g for g in gaps if g["table"] == 1)
    assert f"| {anchors[g1['best_published']]['label']}: {g1['best_value']:.2f} dB |" in lines[2]
    assert len(lines) == 2 + 3 + 3 + 1 + 1
    assert "35.00 dB / 0.9800 at 1.121 bpp (2 images)" in lines[2]       # the measured Song row at 1.12 bpp
    assert lines[-2].endswith("| not measured |") and "+0.50 dB; -0.75 dB (2 images)" in lines[-1]


def test_visual_panels_encode_at_the_rate_and_window_psnr_reads_them(tiny_ckpt, photo):
    from semlib import metrics

    panels = tables.visual_panels(photo, 1.5, classical=(("jpeg", "JPEG"),), checkpoint=tiny_ckpt, roi=False)
    assert [p[0] for p in panels] == ["original", "JPEG", "semlib, uniform γ"] and panels[0][2] is None
    assert all(p[1].shape == photo.shape for p in panels)
    assert abs(panels[1][2] - 1.5) < 0.2
    rows = tables.window_psnr(photo, panels, 8, 16, 32)
    assert [r["label"] for r in rows] == ["JPEG", "semlib, uniform γ"]
    assert rows[0]["window"] == pytest.approx(metrics.psnr(photo[8:40, 16:48], panels[1][1][8:40, 16:48]))
    assert rows[0]["whole"] == pytest.approx(metrics.psnr(photo, panels[1][1]))


def test_refinement_bd_compares_every_curve_on_the_refined_images_only():
    def res(name, images):          # bpp_i = s * 2^j, psnr 30 + 3j (the same for each image)
        per = {n: {"quality": [1, 2, 3, 4], "bpp": [s * 2 ** j for j in range(4)],
                   "psnr-rgb": [30.0 + 3 * j for j in range(4)]} for n, s in images.items()}
        mean = {k: [float(np.mean([per[n][k][j] for n in per])) for j in range(4)] for k in ("bpp", "psnr-rgb")}
        return {"name": name, "meta": {}, "results": {"quality": [1, 2, 3, 4], **mean}, "per_image": per}

    plain = res("semlib", {"a": 1.0, "b": 1.0, "c": 4.0})
    refined = res("semlib-refine20", {"a": 0.9, "b": 0.9})        # 10 % fewer bits on a and b
    other = res("webp", {"a": 1.0, "b": 1.0, "c": 0.1})             # equal to plain on a and b
    rows = tables.refinement_bd(refined, plain, {"WebP": other})
    assert rows[0]["anchor"].startswith("semlib") and rows[0]["refined"] == pytest.approx(-10.0, abs=0.01)
    assert rows[1]["plain"] == pytest.approx(0.0, abs=0.01)        # image c left out of both
    assert rows[1]["refined"] == pytest.approx(-10.0, abs=0.01)
    text = tables.refinement_markdown(rows, 20, 2)
    assert "-10.0 %" in text and "`--refine 20`" in text and "2 Kodak images" in text
