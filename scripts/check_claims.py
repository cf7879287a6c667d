"""Check the paper's claims kept in semlib.tables against the paper's own text.

    python scripts/check_claims.py PAPER.txt

PAPER.txt is the paper as plain text (its tables as rows of "|"-separated cells), which the
repository does not ship. Every number of Tables 1-4 in semlib.tables must be the number
printed in that table, in reading order. Exit status 1 when one differs.
"""

import re
import sys
from pathlib import Path

from semlib import tables


def check(text: str) -> list[str]:
    problems = []
    for t in (1, 2, 3, 4):
        start = text.index(f"Table {t}.\n", text.index("Table 1.\nComparison"))
        end = text.find(f"Table {t + 1}.\n", start)
        block = text[start:end if end > 0 else None]
        cells = re.findall(r"^\s*([^|\n]*?)\s*\|", block, flags=re.M)
        printed = [float(x) for x in cells if re.fullmatch(r"\d+(\.\d+)?", x)]   # in reading order
        cl = tables.claims(t)
        if t == 4:   # per dataset: bpp, PSNR base, PSNR +semantic, MS-SSIM base, MS-SSIM +semantic
            expected = [v for b, s in zip(cl[::2], cl[1::2]) for v in (b.bpp, b.psnr, s.psnr, b.ms_ssim, s.ms_ssim)]
        else:
            expected = [v for c in cl for v in (c.psnr, c.ms_ssim)]
            methods = [x for x in cells if x in {c.method for c in cl}]
            if [c.method for c in cl] != methods:
                problems.append(f"Table {t}: rows {[c.method for c in cl]} but the paper has {methods}")
        if printed != expected:
            problems.append(f"Table {t}: semlib.tables has {expected}, the paper prints {printed}")
    return problems


if __name__ == "__main__":
    problems = check(Path(sys.argv[1]).read_text())
    print("\n".join(problems) or "Tables 1-4 of semlib.tables are the numbers printed in the paper")
    sys.exit(1 if problems else 0)
