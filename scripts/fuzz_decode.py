"""Fuzz ``semlib.codec.decode`` with damaged and forged ``.semc`` files (the code:
experiments/fuzzing.py, which says what each case does and what counts as a failure).

    nice -n 10 .venv/bin/python scripts/fuzz_decode.py --cases 10000 --workers 2
    nice -n 10 .venv/bin/python scripts/fuzz_decode.py --tiled --cases 2000 --workers 1   # tiled files (version 3)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository, for experiments/

from experiments.fuzzing import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
