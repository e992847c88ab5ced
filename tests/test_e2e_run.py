"""End to end on built-in pieces: `saebench run` on a tiny config writes SAELens checkpoints and
leaderboards, a second run retrains nothing, and a run killed with SIGKILL resumes without losing
or retraining a finished cell."""

import os
import signal
import subprocess
import sys
import time

import pytest

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore

pytestmark = pytest.mark.slow

TOML = """
[run]
name = "e2e"
output_dir = "{out}"
sets = ["synth-easy"]
architectures = {archs}
modes = ["trained", "frozen_decoder", "untrained"]
seeds = [0, 1]
metrics = ["reconstruction", "ground_truth"]

[training]
batch_size = 64
curve_every = 5
n_init_samples = 256

[sets.synth-easy]
steps = {steps}
batch_size = 64
d_sae = 32
"""


def write_cfg(tmp_path, archs=("topk", "batchtopk"), steps=15):
    path = tmp_path / "e2e.toml"
    path.write_text(TOML.format(out=tmp_path / "out", archs=list(archs), steps=steps).replace("'", '"'))
    return path


def test_run_writes_checkpoints_and_leaderboards_and_second_run_trains_nothing(tmp_path, capsys):
    from sae_lens import SAE

    cfg = write_cfg(tmp_path)
    assert main(["run", "--config", str(cfg), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "synth-easy" in out and "Verdict rule" in out and "time per cell" in out
    store = ResultStore(tmp_path / "out")
    trained = store.trainings()
    assert len(trained) == 2 * 3 * 2 and set(trained.values()) == {1}
    for key in trained:
        sae = SAE.load_from_disk(str(store.checkpoint_dir(key)))
        assert sae.cfg.d_sae == 32 and sae.cfg.d_in == 32
        rec = store.load_result(key)
        assert rec["status"] == "ok"
        assert {e["name"]: e["status"] for e in rec["metrics"].values()} == {"reconstruction": "ok", "ground_truth": "ok"}
    lb = tmp_path / "out" / "leaderboards"
    md = (lb / "e2e.md").read_text()
    assert md.startswith("# Leaderboard: e2e") and "saebench leaderboard --results" in md
    assert (lb / "e2e" / "synth-easy.png").is_file() and (lb / "e2e.csv").is_file() and (lb / "e2e.json").is_file()
    assert "| topk" in md and "| batchtopk" in md and "recovery ↑" in md

    assert main(["run", "--config", str(cfg), "--threads", "1"]) == 0
    assert store.trainings() == trained  # nothing retrained
    assert main(["leaderboard", "--results", str(tmp_path / "out"), "--out", str(lb), "--name", "e2e", "--check"]) == 0


def test_sigkill_mid_run_then_resume_loses_and_retrains_nothing(tmp_path):
    cfg = write_cfg(tmp_path, archs=("topk", "relu"), steps=40)
    store = ResultStore(tmp_path / "out")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "saebench_sanity.cli", "run", "--config", str(cfg), "--threads", "1",
                             "--no-plots"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(store.trainings()) < 3 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "run finished before it could be killed; raise the steps"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = store.trainings()
    assert 3 <= len(before) < 12
    finished_before = {k for k in before if store.has_checkpoint(k)}
    assert finished_before == set(before)  # every logged training has a complete checkpoint
    # no temporary or half-written files are trusted: every results file parses
    import json as _json

    files = sorted(store.results.glob("*.json"))
    assert [_json.loads(f.read_text(encoding="utf-8"))["key"] for f in files] == [f.stem for f in files]
    assert len(store.iter_results()) == len(files)

    # a kill between a checkpoint and its "trained" event leaves a checkpoint the log does not
    # count: what was finished before the resume is what has a checkpoint
    kept = set(store.checkpoint_keys())
    assert set(before) <= kept
    assert main(["run", "--config", str(cfg), "--threads", "1", "--no-plots"]) == 0
    after = store.trainings()
    resumed = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
    assert not kept & set(resumed), "a finished cell was trained again"
    assert set(resumed.values()) <= {1} and set(after.values()) == {1}
    assert kept | set(resumed) == set(store.checkpoint_keys()) and len(store.checkpoint_keys()) == 12  # nothing lost
    assert all(r["status"] == "ok" for r in store.iter_results())
    assert not [p for p in store.root.rglob(".*.tmp")]  # leftovers of the killed run are gone
