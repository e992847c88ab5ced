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

