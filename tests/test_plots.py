"""semlib.plots, semlib.metrics.block_bits, semlib.importance.spectral_residual_saliency and
semlib.evaluate.subset_results: the helpers the notebooks call."""

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from semlib import evaluate, importance, metrics, plots


def test_block_bits_keeps_the_total_and_spreads_coarse_latents():
    fine = torch.full((1, 2, 4, 6), 0.5)       # stride 8 on 32 x 48: 1 bit per value, 2 per block
    coarse = torch.full((1, 1, 2, 3), 0.25)    # stride 16: 2 bits per value over 2 x 2 blocks
    coarse[0, 0, 0, 0] = 1.0                   # a free value: 0 bits
    m = metrics.block_bits({"z0": coarse, "z1": fine}, 32, 48)
    assert m.shape == (4, 6)
    total = float(-torch.log2(fine).sum() - torch.log2(coarse).sum())
    assert m.sum() == pytest.approx(total)
    assert m[0, 0] == pytest.approx(2.0) and m[1, 1] == pytest.approx(2.0)   # under the free value
    assert m[3, 5] == pytest.approx(2.0 + 0.5)


def test_block_bits_refuses_what_does_not_tile():
    with pytest.raises(ValueError):
        metrics.block_bits([torch.full((1, 1, 3, 3), 0.5)], 32, 32)
    with pytest.raises(ValueError):
        metrics.block_bits([torch.full((1, 1, 4, 4), 0.5)], 30, 32)


def test_block_bits_of_a_real_model_sums_to_its_rate():
    from semlib.models import build_model

    model = build_model("tiny").eval()
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, 256.0)
    m = metrics.block_bits(out["likelihoods"], 64, 128)
    bits = sum(float(-torch.log2(lik.double()).sum()) for lik in out["likelihoods"].values())
    assert m.shape == (8, 16) and (m >= 0).all()
    assert m.sum() == pytest.approx(bits, rel=1e-9)


def test_spectral_residual_marks_a_square_on_a_flat_ground():
    rng = np.random.default_rng(0)
    a = np.full((120, 180, 3), 128, np.uint8) + rng.integers(0, 3, (120, 180, 3), dtype=np.uint8)
    a[40:70, 100:130] = 250
    s = importance.spectral_residual_saliency(a)
    assert s.shape == (120, 180) and s.dtype == np.float32
    assert s.min() >= 0 and s.max() == pytest.approx(1.0)
    assert s[40:70, 100:130].mean() > 3 * s[:, :40].mean()


def test_spectral_residual_refuses_a_tiny_width():
    with pytest.raises(ValueError):
        importance.spectral_residual_saliency(np.zeros((16, 16, 3), np.uint8), width=4)


def test_overlay_grid_lays_out_rows_and_blanks():
    import matplotlib.pyplot as plt

    imgs = [np.zeros((8, 8, 3), np.uint8)] * 7
    fig = plots.overlay_grid(imgs, [np.ones((8, 8))] * 7, [str(i) for i in range(7)], cols=3)
    assert len(fig.axes) == 9 and fig.axes[0].get_title() == "0" and fig.axes[8].get_title() == ""
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.overlay_grid(imgs, [np.ones((8, 8))] * 6, ["a"] * 7)


def test_binned_means():
    c, m, n = plots.binned_means([1, 1.5, 3, 3.5, 9], [1, 3, 10, 20, 7], [1, 2, 4, 8])
    assert np.allclose(c, [np.sqrt(2), np.sqrt(8)]) and np.allclose(m, [2, 15]) and list(n) == [2, 2]


def test_subset_results_matches_the_file_means_over_all_images():
    path = Path(__file__).resolve().parents[1] / "results" / "kodak" / "jpeg.json"
    d = json.loads(path.read_text())
    names = d["meta"]["images"]
    whole = evaluate.subset_results(d, names)
    assert np.allclose(whole["results"]["bpp"], d["results"]["bpp"])
    assert np.allclose(whole["results"]["psnr-rgb"], d["results"]["psnr-rgb"])
    two = evaluate.subset_results(d, names[:2])
    assert two["meta"]["num_images"] == 2
    want = [(a + b) / 2 for a, b in zip(d["per_image"][names[0]]["bpp"], d["per_image"][names[1]]["bpp"])]
    assert np.allclose(two["results"]["bpp"], want)
    with pytest.raises(KeyError):
        evaluate.subset_results(d, ["nope.png"])


def test_map_row_draws_one_axis_per_panel_and_the_colour_bars_asked_for():
    import matplotlib.pyplot as plt

    m = np.linspace(0, 1, 64).reshape(8, 8)
    fig, axes = plots.map_row([(m, "a", "level", {"cmap": "viridis"}), (np.zeros((8, 8, 3)), "photo", None, None)])
    assert len(axes) == 2 and [a.get_title() for a in axes] == ["a", "photo"]
    assert len(fig.axes) == 3                      # two panels and one colour bar
    assert axes[0].get_xlabel() == "x (pixels)"
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.map_row([])


def test_level_axis_sets_plain_log_ticks():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0.25, 4], [0, 1])
    plots.level_axis(ax)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.25", "0.5", "1", "2", "4"]
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.level_axis(ax, axis="z")


# --------------------------------------------------------------------------- notebook 05


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


@pytest.mark.parametrize("name", ["tiny", "small", "paper"])
def test_the_architecture_figure_is_drawn_from_the_config(name):
    from semlib.models import CONFIGS, build_model, count_parameters

    c = CONFIGS[name]
    fig = plots.plot_architecture(name)
    text = "\n".join(_texts(fig))
    for s, w in zip((4, 8, 16, 32, 64), c.enc_widths):
        assert f"/{s}: " in text and f"{w} ch" in text
    for t in range(4):
        assert f"z: {c.z_dims[t]} ch" in text
    assert f"{sum(c.latents)} latent blocks" in text and f"embedding, {c.emb_dim} + 1" in text
    if name == "tiny":   # the parameter count in the title is the real model's
        assert f"{count_parameters(build_model('tiny')) / 1e6:.2f} M parameters" in text
    changed = plots.plot_architecture(dataclasses.replace(c, z_dims=(3, 5, 7, 9)))
    assert "z: 9 ch" in "\n".join(_texts(changed))
    with pytest.raises(ValueError):
        plots.plot_architecture("huge")
    with pytest.raises(TypeError):
        plots.plot_architecture(42)


def test_the_batch_log_and_modulation_figures():
    from semlib.models import random_model

    x = torch.rand(3, 3, 16, 16)
    imp = torch.rand(3, 16, 16)
    gamma = torch.full((3, 2, 2), 64.0)
    fig = plots.plot_training_batch(x, imp, gamma, (32, 2048), title="batch")
    assert len(fig.axes) == 10 and fig.axes[6].get_xlabel() == "γ from 64 to 64"
    with pytest.raises(ValueError):
        plots.plot_training_batch(x, imp[:2], gamma, (32, 2048))
    log = [{"kind": "train", "step": s, "loss": 1.0 / s, "bpp": 0.1 * s, "psnr": 20 + s} for s in (1, 2, 3)]
    log += [{"kind": "val", "step": 3, "gamma": g, "bpp": g / 100, "psnr": 25.0} for g in (64.0, 1024.0)]
    fig = plots.plot_training_log(log, "run")
    assert [len(ax.lines) for ax in fig.axes] == [1, 3, 3]
    assert list(fig.axes[2].lines[2].get_ydata()) == [25.0]
    with pytest.raises(ValueError):
        plots.plot_training_log(log[3:])
    fig = plots.plot_modulations(random_model("tiny", 0), (32, 2048), blocks=2, channels=3)
    assert len(fig.axes) == 2 and all(len(ax.lines) == 3 for ax in fig.axes)


def test_the_roi_pair_figure_shows_both_files(photo, tiny_model):
    from semlib import demo

    importance = np.linspace(0, 1, photo.shape[0] * photo.shape[1], dtype=np.float32).reshape(photo.shape[:2])
    pair = demo.roi_against_uniform(photo, importance, gamma=128.0, model=tiny_model)
    fig = plots.plot_roi_pair(photo, pair, (32, 2048))
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith(f"semlib ROI: {pair.roi.bpp:.3f} bpp") for t in titles)
    assert any(t.startswith(f"semlib uniform: {pair.uniform.bpp:.3f} bpp") for t in titles)
    assert "the same bpp" in fig._suptitle.get_text()


# ---------------------------------------------------------------------------------------
# The figures of notebook 06


def _rd(name, bpp, psnr, ms=None):
    r = {"bpp": list(bpp), "psnr-rgb": list(psnr)}
    if ms is not None:
        r["ms-ssim-rgb"] = list(ms)
    return {"name": name, "meta": {"num_images": 2}, "results": r}


def test_rd_with_claims_draws_curves_anchors_and_claimed_points_per_metric():
    import matplotlib.pyplot as plt

    from semlib import tables

    own = [c for c in tables.claims(1) if c.method == tables.OWN_METHOD]
    axes = plots.rd_with_claims([_rd("a", [0.5, 1.0], [30, 33], [0.95, 0.97])],
                                [(own, {"marker": "*", "color": "k"}, "claims")],
                                {"psnr-rgb": ("jpeg",), "ms-ssim-rgb": ()}, ylims={"psnr-rgb": (20, 45)})
    assert len(axes) == 2 and axes[0].get_ylim() == (20, 45)
    labels = [l.get_label() for l in axes[0].get_lines()]
    assert labels[0] == "a" and "claims" in labels and any("published" in s for s in labels)
    star = next(l for l in axes[1].get_lines() if l.get_label() == "claims")
    assert list(star.get_ydata()) == [c.ms_ssim for c in own]               # MS-SSIM panel: the claimed MS-SSIM
    plt.close("all")


def test_claim_gaps_figure_has_one_bar_per_claim_and_fig15_one_point_per_fixed_model():
    import matplotlib.pyplot as plt

    gaps = [{"table": 1, "claim": "Song method (x)", "dataset": "kodak", "bpp": 1.12, "gap": 0.6},
            {"table": 4, "claim": "Baseline (Kodak)", "dataset": "kodak", "bpp": 1.124, "gap": None}]
    fig = plots.claim_gaps_figure(gaps)
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert widths == [0.6, 0.0]
    variable = {"results": {"quality": [32, 2048], "bpp": [0.5, 2.0], "psnr-rgb": [29.0, 32.0]}}
    rows = [{"gamma": 32, "fixed_bpp": 0.4, "fixed": 28.5}, {"gamma": 512, "fixed_bpp": 1.5, "fixed": 32.4}]
    fig = plots.fig15_figure(variable, rows, context=_rd("s", [0.3, 1.0], [29, 34]), context_label="shipped")
    lines = {l.get_label(): l for l in fig.axes[0].get_lines()}
    assert list(lines["fixed-rate models, one per γ"].get_xdata()) == [0.4, 1.5]
    assert "one γ-conditioned model (γ 32…2048)" in lines and "shipped" in lines
    plt.close("all")


def test_visual_comparison_shows_each_panel_and_its_zoom():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    fig = plots.visual_comparison(a, [("original", a, None), ("codec", b, 0.75)], 4, 10, 16, title="t")
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title().startswith("codec\n0.750 bpp,")
    assert fig.axes[2].images[0].get_array().shape[:2] == (16, 16)           # the zoom row shows the window
    plt.close("all")


def test_small_sets_figure_has_two_panels_per_dataset():
    import matplotlib.pyplot as plt

    from semlib import tables

    c = {"tecnick": {"jpeg": _rd("jpeg", [0.5, 1.0], [30, 33], [0.95, 0.97])},
         "clic2022": {"jpeg": _rd("jpeg", [0.5, 1.0], [31, 34], [0.96, 0.98])}}
    cl = {ds: [x for x in tables.claims(4) if x.dataset == ds] for ds in c}
    fig = plots.small_sets_figure(c, {"tecnick": "T"}, cl, notes={"tecnick": "note"})
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "T: PSNR" and fig.axes[2].get_title() == "clic2022: PSNR"
    assert any(t.get_text() == "note" for t in fig.axes[0].texts)
    plt.close("all")


def test_gamma_rd_figure_labels_every_point_with_its_gamma():
    rows = np.array([(32.0, 0.5, 30.0), (128.0, 1.0, 33.0), (512.0, 1.8, 35.0)])
    fig = plots.gamma_rd_figure({"a": rows, "b": rows + [0, 0.1, 0.2]}, reference=rows[:, :3] - [0, 0, 1],
                                reference_label="jpeg", title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["32", "128", "512"] * 2
    assert [line.get_label() for line in ax.lines] == ["a", "b", "jpeg"]
    assert np.allclose(ax.lines[1].get_xdata(), [0.6, 1.1, 1.9])


def test_live_explorer_redraws_with_every_control_value():
    pytest.importorskip("ipywidgets")
    calls = []
    box = plots.live_explorer(lambda w: {"g": w.FloatSlider(value=1.0, min=0, max=4),
                                         "mode": w.ToggleButtons(options=["a", "b"], value="a")},
                              lambda **kw: calls.append(kw))
    assert calls == []                                  # nothing runs before a control moves
    slider, toggle, out = box.children
    slider.value = 2.5
    toggle.value = "b"
    assert calls == [{"g": 2.5, "mode": "a"}, {"g": 2.5, "mode": "b"}]
    assert type(out).__name__ == "Output"


def test_live_explorer_is_none_without_ipywidgets(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ipywidgets", None)     # import ipywidgets raises ImportError
    assert plots.live_explorer(lambda w: {}, lambda **kw: None) is None
