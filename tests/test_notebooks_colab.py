"""Every notebook opens the same way: title and Colab badge, the `parameters` cell first, then
one Colab set-up cell that clones the repository named in semlib/_project.py and installs it,
with what Colab lacks listed in requirements-colab.txt. No notebook cites a file users lack."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

from semlib._project import REPO_URL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# what Colab ships (or compressai, installed on its own without its numpy pin)
PREINSTALLED = {"torch", "torchvision", "numpy", "scipy", "scikit-image", "matplotlib", "pillow", "tqdm", "compressai"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_opens_with_parameters_then_the_colab_set_up(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    setup = code[1].source
    assert setup.splitlines()[1].startswith('if "google.colab" in sys.modules:')
    assert f'REPO_URL = "{REPO_URL}"' in setup and "git clone" in setup
    assert "requirements-colab.txt" in setup and "--no-deps compressai==1.2.8 -e /content/semlib" in setup
    badge = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert f"{badge}/blob/main/notebooks/{path.name}" in nb.cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_cites_the_method_page_not_a_missing_file(path):
    text = "".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "DESIGN" not in text
    for section in re.findall(r"docs/METHOD\.md §(\d+)", text):
        assert f"\n## {section}. " in (ROOT / "docs" / "METHOD.md").read_text()


def test_colab_installs_every_dependency_it_lacks():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.\-]+", d).group(0).lower() for d in deps}
    colab = {re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower()
             for line in (ROOT / "requirements-colab.txt").read_text().splitlines() if line.strip() and line[0] != "#"}
    assert names - PREINSTALLED <= colab
    assert "numpy" not in colab        # Colab's numpy 2 stays


def test_the_readme_badges_point_at_the_same_repository():
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob", readme)
    assert badges and set(badges) == {REPO_URL.removeprefix("https://github.com/")}
