"""The results store: atomic writes, complete-only checkpoints, the append-only event log."""

import json
import os

import pytest

from saebench_sanity.harness import store as S


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "r.json"
    S.atomic_write_json(path, {"b": 1, "a": float("nan")})
    S.atomic_write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert os.listdir(path.parent) == ["r.json"]


def test_nan_becomes_null_so_the_file_is_strict_json(tmp_path):
    S.atomic_write_json(tmp_path / "x.json", {"v": float("inf"), "w": [float("nan"), 1.0]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": None, "w": [None, 1.0]}


def test_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    S.atomic_write_json(path, {"old": True})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(S.os, "replace", boom)
    with pytest.raises(OSError):
        S.atomic_write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["r.json"]


def test_checkpoint_is_complete_only_with_marker_and_a_failed_save_leaves_nothing(tmp_path):
    st = S.ResultStore(tmp_path)
    assert not st.has_checkpoint("k")

    def failing_save(path):
        (path / "cfg.json").write_text("{}")
        raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError):
        st.write_checkpoint("k", failing_save, {"steps": 1})
    assert not st.has_checkpoint("k")
    assert os.listdir(st.checkpoints) == []

    # a leftover folder without marker (e.g. from an older crash) is not trusted, then replaced
    (st.checkpoint_dir("k")).mkdir()
    (st.checkpoint_dir("k") / "junk").write_text("x")
    assert not st.has_checkpoint("k")
    st.write_checkpoint("k", lambda p: (p / "cfg.json").write_text("{}"), {"steps": 3})
    assert st.has_checkpoint("k")
    assert sorted(os.listdir(st.checkpoint_dir("k"))) == ["COMPLETE", "cfg.json", "train.json"]
    assert st.load_train_info("k") == {"steps": 3}


def test_event_log_ignores_a_torn_last_line(tmp_path):
    st = S.ResultStore(tmp_path)
    st.log_event({"event": "trained", "key": "a"})
    st.log_event({"event": "trained", "key": "b"})
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"event": "trained", "ke')  # killed mid-write
    assert st.trainings() == {"a": 1, "b": 1}


def test_results_roundtrip_and_unreadable_result_counts_as_absent(tmp_path):
    st = S.ResultStore(tmp_path)
    st.write_result("k", {"status": "ok"})
    assert st.load_result("k") == {"status": "ok", "schema_version": 1}  # written with the schema version
    assert st.load_result("missing") is None
    (st.results / "bad.json").write_text("{not json")
    assert st.load_result("bad") is None
    assert st.iter_results() == [{"status": "ok", "schema_version": 1}]


def test_leftover_temporaries_of_a_killed_run_are_cleaned(tmp_path):
    st = S.ResultStore(tmp_path)
    st.write_result("k", {"status": "ok"})
    (st.checkpoints / ".abc.x1.tmp").mkdir(parents=True)
    (st.results / ".k.json.y2.tmp").write_text("{half")
    assert st.clean_temporaries() == 2
    assert os.listdir(st.checkpoints) == [] and os.listdir(st.results) == ["k.json"]
