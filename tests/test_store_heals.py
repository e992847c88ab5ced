"""The results store checks and heals itself: each corruption of a finished run folder is named by
`saebench verify`, moved to quarantine/ by the next run, and that run's results equal an
undisturbed run's; records written before hashes existed still load. Also the io module's
writers (atomic, mkstemp names, modes that follow the umask)."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import pytest

from saebench_sanity import io
from saebench_sanity.cli import main
from saebench_sanity.harness import store as S
from saebench_sanity.harness.run import load_config, run

from conftest import tiny_toml

pytestmark = pytest.mark.usefixtures("one_thread")


# -- io ----------------------------------------------------------------------------------------
def test_stable_hash_bytes_never_change():
    # cell keys are built from it: pinned to the value the pre-io implementation gave
    assert io.stable_hash({"b": [1.5, None], "a": 1}) == "993a7a2ceb877d40fc4b026f38d1b9d56ea47505ed09b616e4ac8f06d00883b0"
    from saebench_sanity.activations.base import stable_hash

    assert stable_hash is io.stable_hash


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_and_folders_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        io.atomic_write_json(tmp_path / "a.json", {"x": 1})
        with io.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        with io.atomic_dir(tmp_path / "d") as d:
            (d / "f").write_bytes(b"y")
            os.chmod(d / "f", 0o600)  # as safetensors leaves its files
    finally:
        os.umask(old)
    for name in ("a.json", "b.bin", "d/f"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin", "d"]  # no temporaries left


def test_a_planted_symlink_at_the_old_fixed_temporary_name_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".out.png.tmp").symlink_to(victim)
    with io.atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"png")
    assert victim.read_text() == "keep me" and (tmp_path / "out.png").read_bytes() == b"png"


def test_a_failed_write_keeps_the_old_file_and_folder(tmp_path):
    io.atomic_write_text(tmp_path / "f", "old")
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("old")
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("new")
        raise RuntimeError("killed")
    assert (tmp_path / "f").read_text() == "old" and (tmp_path / "d" / "x").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["d", "f"]


def test_canonical_json_reserializes_to_its_own_bytes():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                          lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                          max_leaves=20)

    @hypothesis.settings(max_examples=100, deadline=None)
    @hypothesis.given(values)
    def roundtrip(v):
        text = io.dumps({"v": v})
        assert io.dumps(json.loads(text)) == text
        sealed = S.seal({"v": v})
        assert S.unseal(json.loads(io.dumps(sealed)))[1] is None

    roundtrip()


def test_seal_detects_any_edit_and_a_missing_hash_is_legacy():
    sealed = S.seal({"key": "k", "metrics": {"m": {"scores": {"s": 0.5}}}}, checkpoint_sha256="c" * 64)
    body, why, seals = S.unseal(sealed)
    assert why is None and "sha256" not in body and seals["checkpoint_sha256"] == "c" * 64
    edited = json.loads(json.dumps(sealed))
    edited["metrics"]["m"]["scores"]["s"] = 0.6
    assert "does not match its sha256" in S.unseal(edited)[1]
    legacy = {"key": "k", "metrics": {}}
    assert S.unseal(legacy) == (legacy, None, {})
    assert "not an object" in S.unseal([1, 2])[1]


# -- the corruption table on a tiny run ---------------------------------------------------------
def _scores(store: S.ResultStore) -> dict[str, object]:
    """What must equal between runs: per cell its status, steps, convergence and every score."""
    out = {}
    for key in store.result_keys():
        rec = store.load_result(key)
        out[rec["label"]] = (rec["status"], rec["training"]["steps"], rec["training"]["converged"],
                             {m: e.get("scores") for m, e in sorted(rec["metrics"].items())})
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, fake_registry):
    """One undisturbed tiny run: tiny-gauss x topk x (trained, frozen_decoder, untrained) x 2 seeds."""
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("heal")
    cfg = load_config(str(tiny_toml(tmp, metrics=("reconstruction", "latent-mean"))))
    run(cfg, fake_registry)
    store = S.ResultStore(cfg.output_dir)
    assert len(store.result_keys()) == 6 and store.verify().problems == []
    return cfg, store, _scores(store)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    path.write_bytes(bytes(data))


def _edit_score(path: Path) -> None:
    rec = json.loads(path.read_text())
    entry = next(e for e in rec["metrics"].values() if e.get("scores"))
    score = next(iter(entry["scores"]))
    entry["scores"][score] += 0.25  # a hand edit that keeps the JSON valid
    path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")


def _sealed_with(path: Path, **change: object) -> None:
    rec = json.loads(path.read_text())
    rec.update(change)
    io.atomic_write_json(path, S.seal(rec))  # a valid hash over a wrong shape


REC, CKPT, WHOLE = "record", "checkpoint", "whole checkpoint deleted"
#: id -> (what is damaged, how, fragment of the problem `verify` reports)
CASES = {
    "record-random-bytes": (REC, lambda r, c, o: r.write_bytes(random.Random(0).randbytes(300)), "not UTF-8"),
    "record-wrong-json-type": (REC, lambda r, c, o: r.write_text("[1, 2, 3]\n"), "JSON list, not an object"),
    "record-truncated": (REC, lambda r, c, o: r.write_bytes(r.read_bytes()[: r.stat().st_size // 2]), "not valid JSON"),
    "record-edited-score": (REC, lambda r, c, o: _edit_score(r), "does not match its sha256"),
    "record-metrics-wrong-type": (REC, lambda r, c, o: _sealed_with(r, metrics=[1]), "'metrics' is a JSON list"),
    "record-of-another-cell": (REC, lambda r, c, o: shutil.copy(o, r), "is the record of cell"),
    "train-json-missing": (CKPT, lambda r, c, o: (c / "train.json").unlink(), "train.json is missing"),
    "train-json-garbled": (CKPT, lambda r, c, o: (c / "train.json").write_text("{garbage"), "train.json does not match"),
    "weights-missing": (CKPT, lambda r, c, o: (c / "sae_weights.safetensors").unlink(), "sae_weights.safetensors is missing"),
    "weights-garbled": (CKPT, lambda r, c, o: _flip(c / "sae_weights.safetensors"), "sae_weights.safetensors does not match"),
    "cfg-json-garbled": (CKPT, lambda r, c, o: (c / "cfg.json").write_text('{"d_in": 9}'), "cfg.json does not match"),
    "marker-garbled": (CKPT, lambda r, c, o: (c / "COMPLETE").write_bytes(b"\xff\xfe"), "marker is damaged"),
    "checkpoint-deleted": (WHOLE, lambda r, c, o: shutil.rmtree(c), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_corruption_is_named_quarantined_and_healed_to_the_undisturbed_results(case, baseline, fake_registry,
                                                                                   tmp_path, caplog, capsys):
    cfg, clean, expected = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    store = S.ResultStore(out)
    labels = {store.load_result(k)["label"]: k for k in store.result_keys()}
    key, other = labels["tiny-gauss/topk/trained/s0"], labels["tiny-gauss/topk/frozen_decoder/s1"]
    what, corrupt, fragment = CASES[case]
    corrupt(store.result_path(key), store.checkpoint_dir(key), store.result_path(other))
    before = store.trainings()

    report = store.verify()
    if fragment is None:  # a record without its checkpoint is fine to read (records-only folders)
        assert report.problems == []
    else:
        assert [p.key for p in report.problems if p.kind == ("record" if what == REC else "checkpoint")] == [key]
        assert any(fragment in p.message for p in report.problems), report.problems
        assert main(["verify", "--results", str(out)]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert any(line.startswith("problem: ") and key in line and fragment in line for line in lines), lines
        if what == REC:
            assert key not in {rec.get("key") for rec in store.iter_results()}  # never read as data

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="saebench_sanity"):
        run(cfg, fake_registry, out=str(out))
    assert _scores(S.ResultStore(out)) == expected
    after = S.ResultStore(out).trainings()
    retrained = {k for k in after if after[k] != before.get(k)}
    assert retrained == (set() if what == REC else {key})
    quarantined = sorted(str(p.relative_to(store.quarantine)).split("/", 1)[1]
                         for p in store.quarantine.rglob("*") if p.is_file()) if store.quarantine.is_dir() else []
    warnings = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    if what == REC:
        assert quarantined == [f"results/{key}.json"] and len(warnings) == 1 and key in warnings[0]
    elif what == CKPT:
        assert f"results/{key}.json" in quarantined and any(q.startswith(f"checkpoints/{key}/") for q in quarantined)
        assert len(warnings) == 1 and key in warnings[0] and "with its record" in warnings[0]
    else:
        assert quarantined == [] and warnings == []
    final = S.ResultStore(out).verify()
    assert final.problems == [] and final.missing == []
    assert main(["verify", "--results", str(out)]) == 0


def test_legacy_records_and_checkpoints_without_hashes_load_and_are_not_rewritten(baseline, fake_registry, tmp_path):
    cfg, clean, expected = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    store = S.ResultStore(out)
    for key in store.result_keys():  # as written before this change: no seal, marker = the key
        path = store.result_path(key)
        rec = json.loads(path.read_text())
        for name in S.SEAL_FIELDS:
            rec.pop(name)
        path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
        (store.checkpoint_dir(key) / "COMPLETE").write_text(key + "\n")
    snapshot = {p: p.read_bytes() for p in store.results.glob("*.json")}
    report = store.verify()
    assert report.problems == [] and report.missing == [] and len(store.iter_results()) == 6
    run(cfg, fake_registry, out=str(out))
    assert {p: p.read_bytes() for p in store.results.glob("*.json")} == snapshot
    assert _scores(store) == expected and set(store.trainings().values()) == {1}


def test_a_legacy_checkpoint_with_a_truncated_weights_file_is_noticed(baseline, tmp_path):
    _, clean, _ = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    store = S.ResultStore(out)
    key = store.checkpoint_keys()[0]
    (store.checkpoint_dir(key) / "COMPLETE").write_text(key + "\n")
    weights = store.checkpoint_dir(key) / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    problems = [p for p in store.verify().problems if p.kind == "checkpoint"]
    assert [(p.key, "sae_weights.safetensors is damaged" in p.message) for p in problems] == [(key, True)]
    assert not store.has_checkpoint(key)


def test_committed_records_without_hashes_verify_clean():
    root = Path(__file__).resolve().parents[1] / "leaderboards" / "results" / "real"
    if not (root / "run.json").is_file():
        pytest.skip("no committed real results")
    report = S.ResultStore(root).verify()
    assert report.problems == [] and report.missing == [] and report.n_records == 90


def test_verify_exit_codes_for_an_incomplete_folder_and_bad_input(baseline, tmp_path, capsys):
    _, clean, _ = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    store = S.ResultStore(out)
    key = store.result_keys()[0]
    label = store.load_result(key)["label"]
    store.result_path(key).unlink()  # a cell the run planned but never stored
    assert main(["verify", "--results", str(out)]) == 3
    assert f"missing: {label} " in capsys.readouterr().out
    assert main(["verify", "--results", str(tmp_path / "nothing")]) == 2
    assert "not a results folder" in capsys.readouterr().err
    assert main(["verify", "--results", str(out), "--json"]) == 3
    payload = json.loads(capsys.readouterr().out)
    assert payload["missing"] == [label] and payload["problems"] == [] and payload["exit_code"] == 3


def test_verify_on_a_folder_of_results_folders_names_one_instead_of_reporting_clean(capsys):
    """``verify --results leaderboards`` (whose results/ holds one results folder per board) found
    no record there and exited 0, as if the folder were clean."""
    root = Path(__file__).resolve().parents[1] / "leaderboards"
    assert main(["verify", "--results", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds results folders, not records" in err[0] and "leaderboards/results/" in err[0], err


def test_a_damaged_run_json_is_named_by_verify_and_rewritten_by_the_next_run(baseline, fake_registry, tmp_path):
    cfg, clean, expected = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    (out / "run.json").write_text('{"cell_keys": 5}')
    store = S.ResultStore(out)
    assert [(p.path, p.kind) for p in store.verify().problems] == [("run.json", "run")]
    from saebench_sanity.errors import DataError

    with pytest.raises(DataError, match="run.json"):
        store.load_run()
    run(cfg, fake_registry, out=str(out))
    assert store.verify().problems == [] and _scores(store) == expected


def test_the_leaderboard_refuses_an_edited_record_naming_its_file(baseline, tmp_path, capsys):
    _, clean, _ = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    key = S.ResultStore(out).result_keys()[0]
    _edit_score(S.ResultStore(out).result_path(key))
    assert main(["leaderboard", "--results", str(out), "--out", str(tmp_path / "lb"), "--name", "t", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key}.json" in err[0] and "does not match its sha256" in err[0]


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_to_any_stored_file_is_found_and_healed(seed, baseline, fake_registry, tmp_path):
    """Seeded random damage (a flipped byte, a cut at a random offset, random bytes, another JSON
    type, a deleted file) to a random file of results/, checkpoints/ or run.json: verify names that
    file without raising, and the next run gives the undisturbed results."""
    cfg, clean, expected = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    rng = random.Random(seed)
    files = sorted(p for p in [out / "run.json", *out.joinpath("results").glob("*.json"), *out.joinpath("checkpoints").rglob("*")]
                   if p.is_file())
    target = rng.choice(files)
    data = target.read_bytes()
    how = rng.choice(["flip", "cut", "random", "type", "delete"])
    if how == "flip":
        i = rng.randrange(len(data))
        target.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])
    elif how == "cut":
        target.write_bytes(data[: rng.randrange(len(data))])
    elif how == "random":
        target.write_bytes(rng.randbytes(rng.randrange(1, 200)))
    elif how == "type":
        target.write_text(rng.choice(["[]", "null", "3", '"x"', "true"]))
    else:
        target.unlink()
    rel = str(target.relative_to(out))
    report = S.ResultStore(out).verify()
    named = [p.path for p in report.problems]
    assert any(rel == p or rel.startswith(p) for p in named), (rel, how, report.problems)
    run(cfg, fake_registry, out=str(out))
    assert _scores(S.ResultStore(out)) == expected
    final = S.ResultStore(out).verify()
    assert final.problems == [] and final.missing == []


KILL_CHILD = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[3])
import torch
torch.set_num_threads(1)
from conftest import FakePlugin
from saebench_sanity import io
from saebench_sanity.harness.run import load_config, run
from saebench_sanity.registry import Registry

kill_at, calls, real = int(sys.argv[2]), [], io.atomic_write_bytes

def write(path, data):  # the kill_at-th write dies half-way, as a SIGKILL during write() would leave it
    calls.append(path)
    if len(calls) == kill_at:
        (path.parent / f".{path.name}.killed.tmp").write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)

io.atomic_write_bytes = write
run(load_config(sys.argv[1]), Registry(load_entry_points=False, extra_plugins=[FakePlugin()]))
"""


@pytest.mark.slow
def test_sigkills_in_the_middle_of_writes_resume_to_the_undisturbed_results(baseline, fake_registry, tmp_path):
    """Three runs SIGKILLed in the middle of a write (the first checkpoint's marker; the third
    member's train.json; a record's last metric entry), each resuming the last: the final resume
    stores exactly the undisturbed run's results, trains no cell twice, leaves no temporary."""
    import subprocess
    import sys

    cfg_path = tiny_toml(tmp_path, metrics=("reconstruction", "latent-mean"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    tests_dir = str(Path(__file__).resolve().parent)
    for kill_at in (3, 6, 9):  # counted from each resumed run's own first write
        proc = subprocess.run([sys.executable, "-c", KILL_CHILD, str(cfg_path), str(kill_at), tests_dir], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(out.rglob(".*.killed.tmp"))  # the kills left half-written temporaries behind
    run(load_config(str(cfg_path)), fake_registry)
    store = S.ResultStore(out)
    assert _scores(store) == baseline[2]
    assert set(store.trainings().values()) == {1} and len(store.trainings()) == 6
    assert not [p for p in out.rglob("*") if io.is_temporary(p.name)]
    assert store.verify().problems == []


def test_verify_names_a_planned_metric_missing_from_a_record(baseline, tmp_path, capsys):
    _, clean, _ = baseline
    out = tmp_path / "out"
    shutil.copytree(clean.root, out)
    store = S.ResultStore(out)
    key = store.result_keys()[0]
    rec = json.loads(store.result_path(key).read_text())
    dropped = sorted(rec["metrics"])[0]
    del rec["metrics"][dropped]  # as a run killed before scoring that metric leaves it
    io.atomic_write_json(store.result_path(key), S.seal(rec))
    assert main(["verify", "--results", str(out)]) == 3
    assert f"{rec['label']}: metric {dropped.split(':')[0]} " in capsys.readouterr().out
