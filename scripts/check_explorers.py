r"""Check the notebooks' ipywidgets explorers in a real browser.

Starts JupyterLab on 127.0.0.1 (a token, a free port, SEMLIB_QUICK=1, this checkout first on
PYTHONPATH), opens each notebook in headless Chromium, runs all its cells from the Lab's Run
menu, waits until every cell has run and the kernel is idle, then finds every control
(sliders, dropdowns, checkboxes, toggle buttons, radio buttons, text boxes, buttons) in the
rendered outputs, moves it with the keyboard or the mouse (pressing an interact's "Run"
button where it has one) and checks that the output beside it changed: its text, or the
bytes of an image in it. One line per control; exit status 1 if any check failed, 2 if the
check could not start.

    python scripts/check_explorers.py                        # notebooks 00, 02 and 05
    python scripts/check_explorers.py --notebooks notebooks/02_block_bit_allocation.ipynb \
        --screenshots /tmp/shots --chromium /usr/bin/chromium

Needs a Chromium (Debian: apt-get install chromium) and `pip install -r requirements-browser.txt`
(Playwright drives the installed Chromium; Playwright's own browser download is not used).
Each notebook runs on a copy in a temporary folder, so the committed notebook is never saved over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOKS = ("notebooks/00_quickstart.ipynb", "notebooks/02_block_bit_allocation.ipynb",
                     "notebooks/05_gamma_conditioned_training.ipynb")

# ipywidgets model name -> the kind of control this script knows how to move
CONTROL_KINDS = {
    "IntSliderModel": "slider", "FloatSliderModel": "slider", "FloatLogSliderModel": "slider",
    "SelectionSliderModel": "slider", "IntRangeSliderModel": "slider",
    "FloatRangeSliderModel": "slider", "SelectionRangeSliderModel": "slider",
    "DropdownModel": "dropdown", "SelectModel": "dropdown",
    "CheckboxModel": "checkbox", "ToggleButtonModel": "toggle",
    "ToggleButtonsModel": "togglebuttons", "RadioButtonsModel": "radio",
    "TextModel": "text", "IntTextModel": "text", "FloatTextModel": "text",
    "BoundedIntTextModel": "text", "BoundedFloatTextModel": "text",
    "ButtonModel": "button",
}


@dataclass(frozen=True)
class Control:
    kind: str
    label: str


# --------------------------------------------------------------------------- pure logic (unit-tested)

def expected_controls(nb: dict) -> list[Control]:
    """The controls a notebook's saved widget state holds (its last run), in the state's order.

    A Button that is the "Run" button of a manual `interactive` (a child of a box with the
    `widget-interact` class) is not a control of its own: it is pressed after each move."""
    state = (nb.get("metadata", {}).get("widgets", {})
             .get("application/vnd.jupyter.widget-state+json", {}).get("state", {}))
    triggers = set()
    for model in state.values():
        if "widget-interact" in model.get("state", {}).get("_dom_classes", []):
            triggers.update(str(c).removeprefix("IPY_MODEL_") for c in model["state"].get("children", []))
    out = []
    for model_id, model in state.items():
        kind = CONTROL_KINDS.get(model.get("model_name", ""))
        if kind is None or (kind == "button" and model_id in triggers):
            continue
        out.append(Control(kind, str(model.get("state", {}).get("description", ""))))
    return out


def missing_kinds(expected: list[Control], found: list[Control]) -> list[str]:
    """'2 slider (1 found)'-style lines for each kind the page shows fewer of than the saved state."""
    lines = []
    for kind in sorted({c.kind for c in expected}):
        want = sum(c.kind == kind for c in expected)
        have = sum(c.kind == kind for c in found)
        if have < want:
            lines.append(f"{want} {kind} ({have} found)")
    return lines


def digest(snapshot: dict) -> dict:
    """Reduce a snapshot of an output area ({'text': str, 'images': [src, ...]}) to hashes."""
    text = re.sub(r"\s+", " ", snapshot.get("text", "")).strip()
    return {"text": hashlib.sha256(text.encode()).hexdigest(),
            "images": [hashlib.sha256(src.encode()).hexdigest() for src in snapshot.get("images", [])],
            "empty": not text and not snapshot.get("images"),
            "errors": [_last_line(e) for e in snapshot.get("errors", [])]}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def new_errors(before: dict, after: dict) -> list[str]:
    """The tracebacks that the outputs show after a move and did not show before it (last lines)."""
    return [e for e in after["errors"] if e not in before["errors"]]


def output_change(before: dict, after: dict) -> str | None:
    """What changed between two digests: 'text', 'image', 'text and image', or None."""
    parts = []
    if before["text"] != after["text"]:
        parts.append("text")
    if before["images"] != after["images"]:
        parts.append("image")
    return " and ".join(parts) or None


def safe_name(text: str) -> str:
    """A file-name fragment of ASCII letters, digits and '-': a Greek letter becomes its name."""
    out = []
    for ch in text:
        if ch.isascii() or unicodedata.combining(ch):
            out.append(ch if ch.isascii() else "")
        else:
            out.append("-" + unicodedata.name(ch, "x").split()[-1].lower() + "-")
    return re.sub(r"[^A-Za-z0-9]+", "-", "".join(out)).strip("-")[:40] or "x"


# --------------------------------------------------------------------------- the page (JavaScript)

CONTROL_SELECTORS = {  # CSS class of each kind's outer element (ipywidgets 8 / jupyterlab_widgets 3)
    "slider": ".widget-slider", "dropdown": ".widget-dropdown, .widget-select",
    "checkbox": ".widget-checkbox", "togglebuttons": ".widget-toggle-buttons",
    "toggle": "button.widget-toggle-button", "radio": ".widget-radio",
    "text": ".widget-text", "button": "button.widget-button",
}

DISCOVER_JS = r"""(selectors) => {
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
  const found = [];
  cells.forEach((cell, cellIndex) => {
    const area = cell.querySelector('.jp-Cell-outputArea');
    if (!area) return;
    for (const [kind, sel] of Object.entries(selectors)) {
      for (const el of area.querySelectorAll(sel)) {
        if (el.hasAttribute('data-check-id')) continue;
        if (kind === 'toggle' && el.closest('.widget-toggle-buttons')) continue;  // part of a group
        let trigger = false;
        if (kind === 'button') {  // the Run button of a manual interact is pressed after each move
          const box = el.closest('.widget-interact');
          trigger = !!box && el.parentElement === box;
        }
        const id = String(found.length);
        el.setAttribute('data-check-id', id);
        const clean = (t) => (t || '').replace(/[\u200b\s]+/g, ' ').trim();  // ipywidgets pads with U+200B
        const lab = el.querySelector(':scope > .widget-label');
        let label = clean(lab && lab.textContent);
        if (!label) label = clean(el.textContent);  // a checkbox's or a button's own text
        found.push({id, kind, label, cell: cellIndex, trigger});
      }
    }
  });
  return found;
}"""

# the outputs of one cell without its controls: what a move must change
SNAPSHOT_JS = r"""([cellIndex, selectors]) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[cellIndex];
  const area = cell.querySelector('.jp-Cell-outputArea');
  const controls = Object.values(selectors).join(', ');
  const inControl = (el) => !!el.closest(controls);
  const images = [];
  for (const img of area.querySelectorAll('img')) if (!inControl(img)) images.push(img.src);
  for (const c of area.querySelectorAll('canvas')) if (!inControl(c)) images.push(c.toDataURL());
  for (const s of area.querySelectorAll('svg')) if (!inControl(s)) images.push(s.outerHTML);
  const copy = area.cloneNode(true);
  for (const el of copy.querySelectorAll(controls)) el.remove();
  for (const el of copy.querySelectorAll('.jp-OutputPrompt')) el.remove();
  const errors = [];
  for (const o of area.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
    if (/Traceback|Error:/.test(o.textContent)) errors.push(o.textContent.slice(-400));
  return {text: copy.textContent, images, errors};
}"""

PROMPTS_JS = r"""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map(
  c => (c.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim())"""

ERRORS_JS = r"""() => Array.from(document.querySelectorAll(
  '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
  .map(e => e.textContent).filter(t => /Traceback|Error/.test(t)).map(t => t.slice(-600))"""


# --------------------------------------------------------------------------- the server

class Lab:
    """A JupyterLab server in its own temporary folder; stop() ends it and any kernel it left."""

    def __init__(self, python: str, log_path: Path):
        self.tmp = Path(tempfile.mkdtemp(prefix="check_explorers_"))
        self.root = self.tmp / "notebooks"
        self.root.mkdir()
        self.runtime = self.tmp / "runtime"
        settings = self.tmp / "settings"
        for name, value in {
            # every cell in the DOM (no virtual scrolling), nothing saved, no news or update checks
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False},
        }.items():
            path = settings / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, SEMLIB_QUICK="1", JUPYTER_RUNTIME_DIR=str(self.runtime),
                   JUPYTER_CONFIG_DIR=str(self.tmp / "config"), OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
                       "PYTHONPATH", "").split(os.pathsep) if p]))
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={settings}",
             f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self.proc.returncode} (log: {self.log.name})")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s (log: {self.log.name})")

    def kernels_idle(self) -> bool:
        return all(k.get("execution_state") == "idle" for k in self.api("kernels"))

    def shutdown_sessions(self) -> None:
        for s in self.api("sessions"):
            self.api(f"sessions/{s['id']}", method="DELETE")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.shutdown_sessions()
            except (OSError, ValueError):
                pass
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # kernels run in their own process groups: end any whose connection file is ours
        for pid in _pids_with_arg(str(self.runtime)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _pids_with_arg(fragment: str) -> list[int]:
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if fragment in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


# --------------------------------------------------------------------------- the checks

class Failed(Exception):
    pass


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_all(page, lab: Lab, timeout: float) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count and the kernel is idle."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def started():  # cells queued or running, or (a quick notebook) all of them run already
        prompts = page.evaluate(PROMPTS_JS)
        return any(p.startswith("[*]") for p in prompts) or all(re.match(r"\[\d+\]", p) for p in prompts)

    wait_until(started, 60, "the cells to start")

    def finished():
        prompts = page.evaluate(PROMPTS_JS)
        return not any(p.startswith("[*]") for p in prompts) and lab.kernels_idle() and prompts

    prompts = wait_until(finished, timeout, "Run All Cells to finish", interval=2)
    not_run = [i for i, p in enumerate(prompts) if not re.match(r"\[\d+\]", p)]
    if not_run:
        errors = page.evaluate(ERRORS_JS)
        raise Failed(f"code cell(s) {', '.join(f'#{i + 1}' for i in not_run)} of {len(prompts)} did not run"
                     + (f"; {_last_line(errors[0])}" if errors else ""))


def settle(page, lab: Lab, cell: int, before: dict, timeout: float):
    """Wait until the cell's outputs differ from `before`, the kernel is idle and they hold still 1 s."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        now = digest(page.evaluate(SNAPSHOT_JS, [cell, CONTROL_SELECTORS]))
        if now != last:
            last, since = now, time.monotonic()
        elif output_change(before, now) and not now["empty"] and time.monotonic() - since >= 1.0 \
                and lab.kernels_idle():
            return now
        time.sleep(0.25)
    return None


def move(page, el, kind: str) -> str:
    """Move one control like a person would; return what was done."""
    if kind == "slider":
        handle = el.locator(".noUi-handle").first
        readout = el.locator(".widget-readout").first
        old = readout.text_content() if readout.count() else None
        handle.focus()
        for key in ("ArrowRight", "ArrowLeft"):  # at the top of its range a slider only goes left
            handle.press(key)
            time.sleep(0.3)
            new = readout.text_content() if readout.count() else None
            if new != old:
                return f"{key} ({old} -> {new})"
        box = handle.bounding_box()  # the keyboard did nothing: drag it with the mouse
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 40, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        return f"dragged ({old} -> {readout.text_content() if readout.count() else '?'})"
    if kind == "dropdown":
        select = el.locator("select").first
        options = select.locator("option").all_text_contents()
        if len(options) < 2:
            raise Failed("a dropdown with fewer than two options")
        current = select.evaluate("s => s.selectedIndex")
        new = (current + 1) % len(options)
        select.select_option(index=new)
        return f"selected {options[new]!r}"
    if kind == "checkbox":
        box = el.locator("input[type=checkbox]").first
        box.click()
        return f"clicked (checked: {box.is_checked()})"
    if kind in ("toggle", "button"):
        el.click()
        return "clicked"
    if kind == "togglebuttons":
        buttons = el.locator("button:not(.mod-active)")
        if buttons.count() == 0:
            raise Failed("toggle buttons with nothing to choose")
        name = buttons.first.text_content()
        buttons.first.click()
        return f"chose {name!r}"
    if kind == "radio":
        radio = el.locator("input[type=radio]:not(:checked)").first
        radio.check()
        return "chose another option"
    if kind == "text":
        box = el.locator("input, textarea").first
        if box.get_attribute("type") == "number":
            box.focus()
            box.press("ArrowUp")
        else:
            box.focus()
            box.press("End")
            box.type("x")
        box.press("Enter")
        return f"typed (now {box.input_value()!r})"
    raise Failed(f"no way to move a {kind}")


def outputs(page, cell: int):
    """The output area of the notebook's cell number `cell` (counted from 0, markdown cells included)."""
    return page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-Cell-outputArea")


def check_notebook(page, lab: Lab, notebook: Path, shots: Path, args) -> list[tuple[str, bool, str]]:
    """Open, run and exercise one notebook; return (what, passed, detail) rows."""
    rows = []
    stem = notebook.stem
    nb = json.loads(notebook.read_text())
    expected = expected_controls(nb)
    shutil.copy(notebook, lab.root / notebook.name)
    t0 = time.monotonic()
    page.goto(f"{lab.url}/lab/tree/{notebook.name}?reset&token={lab.token}", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)

    def kernel_started():
        select = page.locator(".jp-Dialog button", has_text="Select")
        if select.count():  # a notebook without kernel metadata: take the kernel the Lab proposes
            select.first.click()
        return lab.api("sessions") and lab.kernels_idle()

    wait_until(kernel_started, 120, "the kernel to start")
    run_all(page, lab, args.run_timeout)
    rows.append(("run all cells", True, f"{time.monotonic() - t0:.0f} s"))

    broken = page.locator(".jp-Notebook .jp-OutputArea", has_text="Error displaying widget")
    if broken.count():
        rows.append(("widgets render", False, f"{broken.count()} output(s) say 'Error displaying widget'"))
    found = page.evaluate(DISCOVER_JS, CONTROL_SELECTORS)
    controls = [c for c in found if not c["trigger"]]
    short = missing_kinds(expected, [Control(c["kind"], c["label"]) for c in controls])
    if short:
        rows.append(("controls found", False, "the saved widget state has " + ", ".join(short)))
    if not controls:
        rows.append(("controls found", False, "no ipywidgets control on the page"))
        page.screenshot(path=str(shots / f"{stem}_no_controls.png"), full_page=True)
        return rows
    for cell in sorted({c["cell"] for c in controls}):
        outputs(page, cell).screenshot(path=str(shots / f"{stem}_cell{cell}_0_start.png"))
    for n, c in enumerate(controls, 1):
        what = f"{c['kind']} {c['label']!r} (cell {c['cell']})"
        el = page.locator(f"[data-check-id='{c['id']}']")
        try:
            el.scroll_into_view_if_needed(timeout=10_000)
            before = digest(page.evaluate(SNAPSHOT_JS, [c["cell"], CONTROL_SELECTORS]))
            done = move(page, el, c["kind"])
            triggers = [t for t in found if t["trigger"] and t["cell"] == c["cell"]]
            for t in triggers:  # a manual interact computes only when its button is pressed
                page.locator(f"[data-check-id='{t['id']}']").click()
                done += f", pressed {t['label']!r}"
            t1 = time.monotonic()
            after = settle(page, lab, c["cell"], before, args.control_timeout)
            outputs(page, c["cell"]).screenshot(path=str(shots / f"{stem}_cell{c['cell']}_{n}_{c['kind']}-{safe_name(c['label'])}.png"))
            if after is None:
                rows.append((what, False, f"{done}; the output did not change within {args.control_timeout:.0f} s"))
            elif new_errors(before, after):
                rows.append((what, False, f"{done}; the output shows an error: {new_errors(before, after)[0]}"))
            else:
                rows.append((what, True, f"{done}; {output_change(before, after)} changed in {time.monotonic() - t1:.1f} s"))
        except Failed as e:
            rows.append((what, False, str(e)))
        except Exception as e:  # a Playwright error: report it against this control, go on with the next
            rows.append((what, False, f"{type(e).__name__}: {str(e).splitlines()[0]}"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notebooks", nargs="+", type=Path, default=[ROOT / n for n in DEFAULT_NOTEBOOKS])
    p.add_argument("--screenshots", type=Path, default=ROOT / "results" / "cache" / "explorer_screenshots",
                   help="folder for the screenshots (default: results/cache/explorer_screenshots)")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                   help="the Chromium executable (default: chromium on PATH)")
    p.add_argument("--python", default=sys.executable, help="the Python that runs JupyterLab and the kernel")
    p.add_argument("--run-timeout", type=float, default=600, help="seconds for one notebook's Run All (600)")
    p.add_argument("--control-timeout", type=float, default=180, help="seconds for one control's output (180)")
    args = p.parse_args(argv)

    for nb in args.notebooks:
        if not nb.is_file():
            print(f"check_explorers: no such notebook: {nb}", file=sys.stderr)
            return 2
    if not args.chromium or not Path(args.chromium).exists():
        print("check_explorers: no Chromium found (apt-get install chromium, or pass --chromium PATH)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_explorers: Playwright is missing (pip install -r requirements-browser.txt)", file=sys.stderr)
        return 2
    args.screenshots.mkdir(parents=True, exist_ok=True)
    log_path = args.screenshots / "jupyterlab.log"

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a kill still ends the server and browser
    start = time.monotonic()
    results: dict[str, list] = {}
    lab = Lab(args.python, log_path)
    try:
        lab.wait_ready(300)
        print(f"JupyterLab on {lab.url} ({time.monotonic() - start:.0f} s to start; log {log_path})", flush=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=["--disable-dev-shm-usage", "--disable-gpu"])
            try:
                for nb in args.notebooks:
                    page = browser.new_page(viewport={"width": 1280, "height": 1400})
                    name = nb.name
                    print(f"== {name}", flush=True)
                    try:
                        rows = check_notebook(page, lab, nb.resolve(), args.screenshots, args)
                    except Exception as e:
                        page.screenshot(path=str(args.screenshots / f"{nb.stem}_failed.png"), full_page=True)
                        rows = [("notebook", False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")]
                    finally:
                        page.close()
                        lab.shutdown_sessions()  # one kernel at a time
                    for what, ok, detail in rows:
                        print(f"   {'PASS' if ok else 'FAIL'}  {what}: {detail}", flush=True)
                    results[name] = rows
            finally:
                browser.close()
    except RuntimeError as e:
        print(f"check_explorers: {e}", file=sys.stderr)
        return 2
    finally:
        lab.stop()

    failed = sum(not ok for rows in results.values() for _, ok, _ in rows)
    passed = sum(ok for rows in results.values() for _, ok, _ in rows)
    for name, rows in results.items():
        print(f"{name}: {'ok' if all(ok for _, ok, _ in rows) else 'FAILED'}")
    print(f"the whole check took {time.monotonic() - start:.0f} s; screenshots in {args.screenshots}")
    print(f"explorers: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
