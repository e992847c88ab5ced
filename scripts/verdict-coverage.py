"""How many judged leaderboard rows carry a verdict, per committed board.

    python scripts/verdict-coverage.py [leaderboards/synthetic.json leaderboards/real.json ...]

A judged row is one with a direction (higher or lower is better). It carries a verdict when its
label is BEATS, FAILS, INCONCLUSIVE or AT CHANCE; SEEDS, UNDERTRAINED, L0 NOT MATCHED and NO DATA
withhold one. Prints one line per board with the count of each label and the coverage.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

VERDICTS = ("BEATS", "FAILS", "INCONCLUSIVE", "AT CHANCE")
WITHHELD = ("UNDERTRAINED", "L0 NOT MATCHED", "SEEDS", "NO DATA")


def coverage(path: Path) -> tuple[Counter, int, int]:
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    labels = Counter(r["verdict"] for r in rows if r.get("direction") in ("higher", "lower"))
    judged = sum(labels.values())
    return labels, judged, sum(labels[v] for v in VERDICTS)


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted(Path("leaderboards").glob("*.json"))
    print(f"{'board':<22} {'rows':>5} {'verdict':>8} {'coverage':>9}  " + "  ".join(VERDICTS + WITHHELD))
    for path in paths:
        labels, judged, with_verdict = coverage(path)
        counts = "  ".join(f"{labels.get(v, 0):>{len(v)}}" for v in VERDICTS + WITHHELD)
        share = f"{100 * with_verdict / judged:.0f}%" if judged else "-"
        print(f"{path.stem:<22} {judged:>5} {with_verdict:>8} {share:>9}  {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
