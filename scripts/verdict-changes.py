"""How the verdicts of a board changed between two versions of it.

    python scripts/verdict-changes.py OLD.json NEW.json
    python scripts/verdict-changes.py --git REV leaderboards/synthetic.json   # OLD = the file at REV
    python scripts/verdict-changes.py --git OLD..NEW leaderboards/synthetic.json   # both from git
    python scripts/verdict-changes.py --list OLD.json NEW.json   # also each changed row

The two-revision form pins what a regeneration changed when it was committed, so the docs can
quote it and a later regeneration of the board does not change the answer.

Rows are matched by (set, arch, metric, score); for every judged row (a score with a direction) present
in both, prints the count of each (old label -> new label) pair, then the rows present in only
one version; ``--list`` (first argument) adds one line per changed row. Used to state what a regeneration changed (docs/results.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


def _rows(text: str) -> dict[tuple[str, str, str, str], str]:
    rows = json.loads(text)["rows"]
    # the metric is part of the key: two metrics may name a score alike (reconstruction's and
    # reconstruction_bulk's explained_variance)
    return {(r["set"], r["arch"], r.get("metric", ""), r["score"]): r["verdict"] for r in rows
            if r.get("direction") in ("higher", "lower")}


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout


def main(argv: list[str]) -> int:
    listing = bool(argv) and argv[0] == "--list"
    argv = argv[1:] if listing else argv
    if len(argv) == 3 and argv[0] == "--git":
        old_rev, _, new_rev = argv[1].partition("..")
        try:
            old_text = _git_show(old_rev, argv[2])
            new_text = _git_show(new_rev, argv[2]) if new_rev else Path(argv[2]).read_text(encoding="utf-8")
        except subprocess.CalledProcessError as e:
            print(f"error: git show {argv[1]}:{argv[2]} failed: {e.stderr.strip()}", file=sys.stderr)
            return 2
    elif len(argv) == 2:
        old_text, new_text = (Path(p).read_text(encoding="utf-8") for p in argv)
    else:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    old, new = _rows(old_text), _rows(new_text)
    both = sorted(set(old) & set(new))
    pairs = Counter((old[k], new[k]) for k in both)
    changed = sum(n for (a, b), n in pairs.items() if a != b)
    print(f"{len(both)} judged rows in both versions; {changed} changed verdict")
    for (a, b), n in sorted(pairs.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {a} -> {b}{'' if a != b else '  (same)'}")
    if listing:
        for k in both:
            if old[k] != new[k]:
                print(f"  {'/'.join(k)}: {old[k]} -> {new[k]}")
    only_old, only_new = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    if only_old or only_new:
        print(f"{len(only_old)} rows only in the old version, {len(only_new)} only in the new")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
