"""scripts/steps-report.py --rising, the count docs/limitations.md quotes: members stopped early
as level while some curve's interval still lay above zero, checked against the raw records."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rising_counts_match_the_records():
    folder = ROOT / "leaderboards" / "results" / "synthetic"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "steps-report.py"), "--rising", str(folder)],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    got = {}
    for line in out:
        m = re.match(r"synthetic\s+(\S+)\s+stopped early as level\s+(\d+)\s+of them still improving\s+(\d+)", line)
        assert m, line
        got[m[1]] = (int(m[2]), int(m[3]))
    level, improving = Counter(), Counter()
    run_cells = set(json.loads((folder / "run.json").read_text())["cell_keys"])
    for path in (folder / "results").glob("*.json"):
        rec = json.loads(path.read_text())
        cell, training = rec["cell"], rec["training"]
        conv = training.get("convergence") or {}
        if rec["key"] not in run_cells or not cell.get("trains", True) or conv.get("state") != "level":
            continue
        if training["steps"] >= cell["training"]["max_steps"]:
            continue
        level[cell["set"]] += 1
        improving[cell["set"]] += any((c.get("lo") or 0) > 0 for c in conv.get("curves", {}).values())
    assert got == {name: (level[name], improving[name]) for name in level}
    assert sum(k for _, k in got.values()) > 0  # the committed board has such members (docs/limitations.md)


def test_seconds_are_the_records_sums_and_name_the_figures_docs_performance_quotes():
    """--seconds: the committed real board's metric seconds (docs/performance.md, "Thread pools
    outside torch"), checked against a sum over the raw records."""
    folder = ROOT / "leaderboards" / "results" / "real"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "steps-report.py"), "--seconds", str(folder)],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    run_cells = set(json.loads((folder / "run.json").read_text())["cell_keys"])
    sums: Counter = Counter()
    for path in (folder / "results").glob("*.json"):
        rec = json.loads(path.read_text())
        if rec["key"] in run_cells:
            for m in rec["metrics"].values():
                sums[m["name"]] += m.get("seconds") or 0
    assert out[0].endswith(f"metric seconds summed {sum(sums.values()):,.0f} s")
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {name for name, v in sums.items() if v}
    assert rows["sparse_probing"].split()[1] == f"{sums['sparse_probing']:,.0f}" == "903"  # as the docs quote
