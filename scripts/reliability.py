"""The reliability table: every fault the fault-injection tests inject, and whether the suite
survived it, from a fresh run of those tests.

    python scripts/reliability.py            # runs the tests (a few minutes on 2 cores)
    python scripts/reliability.py --markdown # the same, as the Markdown table in docs/results-store.md

A fault is one test case (a parametrized case counts once per parameter). "Survived" means the
test's assertions held: for damaged or killed runs, the next run healed to results equal to an
undisturbed run's (no finished result lost, no damaged one used); for bad input, one line and
exit 2 before any work; for judges, a bounded time and a recorded skip; for paths, nothing
written outside the named folder. A failing case is counted as not survived and named.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (family, file, substring of the test name or "" for any), first match wins
FAMILIES = [
    ("SIGKILL mid-run or mid-write, then resume", "test_store_heals.py", "sigkill"),
    ("a killed lock holder (stale lock taken over)", "test_locks.py", "killed"),
    ("a Ray worker SIGKILLed mid-task (retried)", "test_executor_ray.py", "killed"),
    ("a task that raises, an unreachable cluster", "test_executor_ray.py", "raises"),
    ("a task that raises, an unreachable cluster", "test_executor_ray.py", "nobody_answers"),
    ("damaged or missing records, checkpoints, run.json", "test_store_heals.py", ""),
    ("two runs / builds / conversions at once", "test_locks.py", ""),
    ("bad config values and CLI input (incl. fuzzing)", "test_config_validation.py", ""),
    ("hostile or failing judge endpoint", "test_judge_faults.py", ""),
    ("names that would write outside the folder", "test_paths_confined.py", ""),
]


def family(file: str, name: str) -> str:
    for fam, f, sub in FAMILIES:
        if file.endswith(f) and sub in name.lower():
            return fam
    return "other"


def main(argv: list[str]) -> int:
    files = sorted({f for _, f, _ in FAMILIES})
    # cases of these files outside the families above (ordinary Ray API tests) are not faults
    countable = {"test_executor_ray.py": ("killed", "raises", "nobody_answers")}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp, "report.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
               *(str(ROOT / "tests" / f) for f in files)]
        subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not xml.exists():
            print("error: pytest wrote no report; run the command above by hand to see why", file=sys.stderr)
            return 2
        root = ET.parse(xml).getroot()
    tried: dict[str, int] = defaultdict(int)
    ok: dict[str, int] = defaultdict(int)
    failed: dict[str, list[str]] = defaultdict(list)
    for case in root.iter("testcase"):
        if case.find("skipped") is not None:
            continue
        file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "")
        only = next((subs for f, subs in countable.items() if file.endswith(f)), None)
        if only is not None and not any(sub in name.lower() for sub in only):
            continue
        fam = family(file, name)
        tried[fam] += 1
        if case.find("failure") is None and case.find("error") is None:
            ok[fam] += 1
        else:
            failed[fam].append(case.get("name", "?"))
    order = [f for f, _, _ in FAMILIES if f in tried] + (["other"] if "other" in tried else [])
    rows = [(f, tried[f], ok[f], tried[f] - ok[f]) for f in dict.fromkeys(order)]
    total = ("all", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows))
    if "--markdown" in argv:
        print("| fault injected | cases | survived | not survived |\n|---|---|---|---|")
        for r in [*rows, total]:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    else:
        for r in [*rows, total]:
            print(f"{r[0]:<52} {r[1]:>5} tried {r[2]:>5} survived {r[3]:>3} not")
    for fam, names in failed.items():
        print(f"not survived ({fam}): {', '.join(names)}", file=sys.stderr)
    return 0 if total[3] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
