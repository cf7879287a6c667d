"""Point the project at another repository (a fork): rewrite REPO_URL in semlib/_project.py,
in every notebook's Colab set-up cell and in the Colab badges of the notebooks and the README.

    python scripts/set_repo_url.py https://github.com/YOU/semlib
"""

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def main(url: str) -> None:
    url = url.rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        sys.exit(f"not a GitHub repository URL: {url}")
    from semlib._project import REPO_URL as old
    badge_old, badge_new = old.replace("https://github.com/", "colab.research.google.com/github/"), \
        url.replace("https://github.com/", "colab.research.google.com/github/")
    project = ROOT / "semlib" / "_project.py"
    project.write_text(project.read_text().replace(f'REPO_URL = "{old}"', f'REPO_URL = "{url}"'))
    readme = ROOT / "README.md"
    readme.write_text(readme.read_text().replace(badge_old, badge_new))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.source = cell.source.replace(f'REPO_URL = "{old}"', f'REPO_URL = "{url}"').replace(badge_old, badge_new)
        nbformat.write(nb, path)
    print(f"{old} -> {url}")


if __name__ == "__main__":
    main(sys.argv[1])
