"""requirements.txt, environment.yml and pyproject.toml pin the same packages."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("- "):          # a YAML list item
            line = line[2:].strip()
        if not line or line.startswith("-e") or line in ("pip", "pip:"):
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        if m:
            out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_requirements_and_environment_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env_lines = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines()
    env = _pins(env_lines)
    assert req == env


def test_pyproject_runtime_pins_match_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, spec in _pins(deps).items():
        assert req.get(name) == spec, name
