"""The pure parts of scripts/check_explorers.py: which controls a notebook's saved widget state
holds, and what counts as a changed output. No browser is started here."""

import importlib.util
import sys
from pathlib import Path

import ipywidgets as widgets
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ce():
    spec = importlib.util.spec_from_file_location("check_explorers", ROOT / "scripts" / "check_explorers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_explorers"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _notebook_with(*shown):
    """A notebook dict whose metadata holds the widget state ipywidgets itself writes for `shown`."""
    every = []
    for w in shown:
        every += [w, *getattr(w, "children", ())]
    state = widgets.Widget.get_manager_state(widgets=every)
    return {"cells": [], "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": state}}}


def test_controls_come_from_the_saved_state_without_the_interact_run_button(ce):
    explorer = widgets.interactive(lambda gamma, roi: None, {"manual": True},
                                   gamma=widgets.FloatLogSlider(value=256, base=2, min=5, max=11, description="γ"),
                                   roi=widgets.Checkbox(value=True, description="ROI"))
    others = [widgets.Dropdown(options=["a", "b"], description="pick"), widgets.Button(description="go"),
              widgets.ToggleButtons(options=["x", "y"]), widgets.HTML("not a control")]
    found = ce.expected_controls(_notebook_with(explorer, *others))
    assert sorted(found, key=lambda c: c.kind) == [
        ce.Control("button", "go"), ce.Control("checkbox", "ROI"), ce.Control("dropdown", "pick"),
        ce.Control("slider", "γ"), ce.Control("togglebuttons", "")]


def test_a_notebook_without_widget_state_expects_no_controls(ce):
    assert ce.expected_controls({"cells": [], "metadata": {}}) == []


def test_missing_kinds_counts_each_kind(ce):
    want = [ce.Control("slider", "a"), ce.Control("slider", "b"), ce.Control("checkbox", "c")]
    assert ce.missing_kinds(want, [ce.Control("slider", "a"), ce.Control("checkbox", "c")]) == ["2 slider (1 found)"]
    assert ce.missing_kinds(want, want + [ce.Control("dropdown", "extra")]) == []


def test_output_change_tells_text_from_image(ce):
    base = ce.digest({"text": "1.00 bpp  30.1 dB", "images": ["data:image/png;base64,AAAA"]})
    assert ce.output_change(base, ce.digest({"text": " 1.00 bpp\n30.1 dB ", "images": ["data:image/png;base64,AAAA"]})) is None
    assert ce.output_change(base, ce.digest({"text": "1.25 bpp  31.0 dB", "images": ["data:image/png;base64,AAAA"]})) == "text"
    assert ce.output_change(base, ce.digest({"text": "1.00 bpp  30.1 dB", "images": ["data:image/png;base64,AAAB"]})) == "image"
    assert ce.output_change(base, ce.digest({"text": "", "images": []})) == "text and image"
    assert ce.digest({"text": " \n", "images": []})["empty"]


def test_a_new_traceback_is_reported_by_its_last_line(ce):
    before = ce.digest({"text": "x", "images": [], "errors": []})
    tb = "\x1b[0;31m----\x1b[0m\nTraceback (most recent call last)\n  ...\n\x1b[0;31mValueError\x1b[0m: boom 9\n"
    after = ce.digest({"text": "y", "images": [], "errors": [tb]})
    assert ce.new_errors(before, after) == ["ValueError: boom 9"]
    assert ce.new_errors(after, after) == []


def test_safe_name_keeps_ascii_only(ce):
    assert ce.safe_name("ROI (Grad-CAM)") == "ROI-Grad-CAM"
    assert ce.safe_name("γ") == "gamma"
    assert ce.safe_name("M̄ and κ") == "M-and-kappa"


def test_bad_arguments_exit_2_before_any_browser(ce, tmp_path, capsys):
    assert ce.main(["--notebooks", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    nb = tmp_path / "a.ipynb"
    nb.write_text("{}")
    assert ce.main(["--notebooks", str(nb), "--chromium", str(tmp_path / "no-chromium")]) == 2
    assert "no Chromium found" in capsys.readouterr().err
