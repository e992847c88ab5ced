"""scripts/verdict-changes.py, the command the docs quote for what a regeneration changed: rows
are matched by set, architecture, metric and score (two metrics may name a score alike), and the
two-revision git form reads both versions from git."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "verdict-changes.py"


def _board(path: Path, verdicts: dict[tuple[str, str], str]) -> Path:
    rows = [{"set": "s", "arch": "topk", "metric": m, "score": sc, "direction": "higher", "verdict": v}
            for (m, sc), v in verdicts.items()]
    rows.append({"set": "s", "arch": "topk", "metric": "reconstruction", "score": "l0", "direction": None,
                 "verdict": "—"})  # descriptive: never judged
    path.write_text(json.dumps({"rows": rows}))
    return path


def _run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, text=True,
                          cwd=cwd).stdout


def test_rows_of_two_metrics_with_one_score_name_are_counted_apart(tmp_path):
    old = _board(tmp_path / "old.json", {("reconstruction", "explained_variance"): "UNDERTRAINED",
                                         ("reconstruction_bulk", "explained_variance"): "BEATS"})
    new = _board(tmp_path / "new.json", {("reconstruction", "explained_variance"): "BEATS",
                                         ("reconstruction_bulk", "explained_variance"): "BEATS"})
    out = _run(str(old), str(new))
    assert out.splitlines()[0] == "2 judged rows in both versions; 1 changed verdict"
    assert "1  UNDERTRAINED -> BEATS" in out and "1  BEATS -> BEATS  (same)" in out


def test_the_two_revision_git_form_reads_both_versions_from_git(tmp_path):
    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    board = _board(tmp_path / "b.json", {("m", "a"): "UNDERTRAINED"})
    git("add", "b.json")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    _board(board, {("m", "a"): "FAILS"})
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "two")
    _board(board, {("m", "a"): "BEATS"})  # the working copy moved on: the pinned form ignores it
    pinned = _run("--git", "HEAD~1..HEAD", "b.json", cwd=tmp_path)
    assert "1  UNDERTRAINED -> FAILS" in pinned
    assert "1  UNDERTRAINED -> BEATS" in _run("--git", "HEAD~1", "b.json", cwd=tmp_path)


def test_list_names_each_changed_row(tmp_path):
    old = _board(tmp_path / "old.json", {("reconstruction", "mse"): "FAILS", ("ground_truth", "mcc"): "BEATS"})
    new = _board(tmp_path / "new.json", {("reconstruction", "mse"): "INCONCLUSIVE", ("ground_truth", "mcc"): "BEATS"})
    out = _run("--list", str(old), str(new)).splitlines()
    assert out[0] == "2 judged rows in both versions; 1 changed verdict"
    assert out[-1] == "  s/topk/reconstruction/mse: FAILS -> INCONCLUSIVE"
    assert not any("ground_truth/mcc:" in line for line in out)  # an unchanged row is not listed


CELLS = Path(__file__).resolve().parents[1] / "scripts" / "cell-differences.py"


def _records(folder: Path, cells: dict[tuple[str, int], tuple[int, float]]) -> Path:
    (folder / "results").mkdir(parents=True)
    for i, ((mode, seed), (steps, ev)) in enumerate(cells.items()):
        record = {"cell": {"set": "s", "arch": "relu", "mode": mode, "seed": seed}, "training": {"steps": steps},
                  "metrics": {"k": {"name": "reconstruction", "status": "ok", "scores": {"explained_variance": ev}},
                              "e": {"name": "ground_truth", "status": "error", "scores": {}}}}
        (folder / "results" / f"{i}.json").write_text(json.dumps(record))
    return folder


def test_cell_differences_counts_seeds_that_differ_in_steps_or_beyond_the_tolerance(tmp_path):
    a = _records(tmp_path / "a", {("trained", 0): (100, 0.5), ("trained", 1): (100, 0.5), ("untrained", 0): (0, 0.9)})
    b = _records(tmp_path / "b", {("trained", 0): (120, 0.5), ("trained", 1): (100, 0.5 + 1e-9),
                                  ("untrained", 0): (0, 0.9 + 1e-3)})
    out = subprocess.run([sys.executable, str(CELLS), str(a), str(b)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0] == "3 cells in both runs; 2 differ (steps, or a score by more than 1e-06)"
    assert "s/relu/trained" in out[1] and "1 of 2 seeds differ; largest score difference 1.0e-09" in out[1]
    assert "s/relu/untrained" in out[2] and "1 of 1 seeds differ; largest score difference 1.0e-03" in out[2]
    assert out[3].startswith("  s/relu/trained/s0: steps 100 / 120  explained_variance 0.5000 / 0.5000")
    assert out[4].startswith("  s/relu/untrained/s0: steps 0 / 0")
    loose = subprocess.run([sys.executable, str(CELLS), str(a), str(b), "--tol", "1e-2"], check=True,
                           capture_output=True, text=True).stdout
    assert loose.splitlines()[0].endswith("1 differ (steps, or a score by more than 0.01)")
    extra = _records(tmp_path / "c", {("trained", 0): (100, 0.5), ("trained", 5): (100, 0.5)})
    first = subprocess.run([sys.executable, str(CELLS), str(a), str(extra)], check=True, capture_output=True,
                           text=True).stdout.splitlines()[0]
    assert first == "1 cells in both runs; 0 differ (steps, or a score by more than 1e-06); 2 only in the first, 1 only in the second"
