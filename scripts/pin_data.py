"""Write the pinned checksum tables semlib/sums/<set>.txt from a local copy of the data sets.

    python scripts/pin_data.py ../shared/data

Each line is ``sha256  bytes  path`` (the path relative to the set's folder), for every
image of the set's folder. Run it only on a copy whose files came unchanged from the
sources of semlib/data.py (SETS) -- the tables are what every later download is checked
against. `semlib data verify NAME` checks a folder against them.
"""

import sys
from pathlib import Path

from semlib import data


def main(root: str) -> None:
    for name in data.SETS:
        folder = Path(root) / name
        files = data.list_images(folder, recursive=True)
        if not files:
            print(f"{name}: no images under {folder}; table left as it was")
            continue
        lines = [f"{data.sha256_file(f)}  {f.stat().st_size}  {f.relative_to(folder).as_posix()}" for f in files]
        (data.SUMS_DIR / f"{name}.txt").write_text("\n".join(lines) + "\n")
        print(f"{name}: {len(lines)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
