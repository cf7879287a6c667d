"""Where the project lives. The Colab set-up cell of every notebook repeats REPO_URL
(semlib is not installed yet when that cell runs); tests/test_notebooks_colab.py checks
that they all say the same as this line. For a fork: change it here and in the notebooks,
e.g. with `python scripts/set_repo_url.py https://github.com/YOU/semlib`."""

REPO_URL = "https://github.com/semlib-project/semlib"
