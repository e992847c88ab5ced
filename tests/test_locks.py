"""One writer per folder: a second `saebench run` on an output folder refuses with one line (exit 2)
and no cell is trained twice; a lock left by a killed process is taken over; concurrent builds of
one activation set and the one-time default-model conversion wait for each other."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from saebench_sanity import locks
from saebench_sanity.cli import main

from conftest import tiny_toml


def test_a_held_lock_refuses_a_second_holder_naming_it(tmp_path):
    with locks.exclusive(tmp_path / "x.lock", "thing X"):
        with pytest.raises(locks.LockBusyError, match=rf"thing X is in use by another process \(pid {os.getpid()}"):
            with locks.exclusive(tmp_path / "x.lock", "thing X"):
                pass  # pragma: no cover
        assert locks.held_by(tmp_path / "x.lock")["pid"] == os.getpid()
    assert locks.held_by(tmp_path / "x.lock") is None
    with locks.exclusive(tmp_path / "x.lock", "thing X"):  # released: free again
        pass


def test_a_second_run_on_a_locked_output_folder_exits_2_with_one_line(tmp_path, use_fake_registry, capsys):
    cfg = tiny_toml(tmp_path)
    out = tmp_path / "out"
    with locks.run_lock(out):
        t0 = time.perf_counter()
        assert main(["run", "--config", str(cfg)]) == 2
        refused_after = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by another process" in err[0] and str(out) in err[0] and "--out" in err[0]
    assert not (out / "results").exists()  # refused before planning or training anything
    assert refused_after < 30  # (no training happened; a generous bound, not a speed assert)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    lock = tmp_path / "out" / locks.RUN_LOCK
    code = ("import os, signal, sys; from saebench_sanity import locks\n"
            "with locks.run_lock(sys.argv[1]):\n"
            "    print('held', flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "held" in proc.stdout
    dead = locks.holder(lock)["pid"]
    assert isinstance(dead, int) and not locks.pid_alive(dead)
    with caplog.at_level(logging.INFO, logger="saebench_sanity.locks"):
        with locks.run_lock(tmp_path / "out"):
            assert locks.holder(lock)["pid"] == os.getpid()
    assert any("took over" in r.getMessage() and f"pid {dead}" in r.getMessage() for r in caplog.records)


def test_a_waiting_holder_says_so_once_and_gets_the_lock_when_it_is_released(tmp_path):
    folder = tmp_path / "set"
    events: list[str] = []
    first_holds, release = threading.Event(), threading.Event()

    def first():
        with locks.folder_lock(folder, "set A"):
            events.append("first in")
            first_holds.set()
            release.wait(30)
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    first_holds.wait(30)
    threading.Timer(0.5, release.set).start()
    with locks.folder_lock(folder, "set A", on_wait=lambda m: events.append(m)):
        events.append("second in")
    t.join()
    assert events[0] == "first in" and events[1].startswith("waiting: set A is in use") and events[2:] == ["first out", "second in"]
    with locks.exclusive(tmp_path / ".other.lock", "x"), pytest.raises(locks.LockBusyError, match="gave up after"):
        with locks.exclusive(tmp_path / ".other.lock", "x", wait=True, timeout=0.3):
            pass  # pragma: no cover


def test_a_lock_file_that_cannot_be_created_is_a_one_line_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(locks.LockError, match="cannot create the lock file"):
        with locks.run_lock(blocker / "out"):
            pass  # pragma: no cover


def test_concurrent_builds_of_one_activation_set_build_it_once(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from saebench_sanity.activations import store as st
    from conftest import tiny_store_env

    base, bundle, cfg = tiny_store_env(tmp_path)
    calls: list[str] = []
    real = st._build_store

    def counted(*a, **k):
        calls.append(threading.current_thread().name)
        time.sleep(0.3)  # keep the first build inside the lock while the second arrives
        return real(*a, **k)

    monkeypatch.setattr(st, "_build_store", counted)
    outs: list[Path] = []
    threads = [threading.Thread(target=lambda: outs.append(st.build_store("s", cfg, base / "acts", progress=False,
                                                                          model_bundle=bundle)), name=f"b{i}")
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(calls) == 1 and len(outs) == 2 and outs[0] == outs[1] and st.is_complete(outs[0])


def test_concurrent_first_uses_of_the_default_model_convert_it_once(tmp_path, monkeypatch):
    from saebench_sanity.models import default_model as dm
    from saebench_sanity.models import loading

    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(dm, "find_default_gguf", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(dm, "_gguf_sha256", lambda gguf: "ab" * 32)
    conversions: list[Path] = []

    def fake_convert(gguf, sha, folder, console):
        conversions.append(folder)
        time.sleep(0.3)
        with dm.atomic_dir(folder) as tmp:
            (tmp / dm._META).write_text("{}")

    def fake_load(folder, local_files_only=True):
        assert (Path(folder) / dm._META).is_file()  # never a half-converted or deleted folder
        return object(), object(), {}

    monkeypatch.setattr(dm, "_convert", fake_convert)
    monkeypatch.setattr(loading, "load_causal_lm", fake_load)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(dm.default_model())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(conversions) == 1 and len(results) == 2


RUN_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(1)
from conftest import FakePlugin
from saebench_sanity.harness.run import load_config, run
from saebench_sanity.registry import Registry

run(load_config(sys.argv[1]), Registry(load_entry_points=False, extra_plugins=[FakePlugin()]))
"""


@pytest.mark.slow
def test_two_runs_on_one_output_folder_never_train_a_cell_twice(tmp_path, fake_registry):
    from saebench_sanity.harness.run import load_config, run
    from saebench_sanity.harness.store import ResultStore

    cfg_path = tiny_toml(tmp_path, metrics=("reconstruction",), steps=200)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.Popen([sys.executable, "-c", RUN_CHILD, str(cfg_path), str(Path(__file__).resolve().parent)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and (locks.held_by(out / locks.RUN_LOCK) or {}).get("pid") != first.pid:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        with pytest.raises(locks.LockBusyError, match=f"pid {first.pid}"):
            run(load_config(str(cfg_path)), fake_registry)
        assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    trained = ResultStore(out).trainings()
    assert len(trained) == 6 and set(trained.values()) == {1}
    run(load_config(str(cfg_path)), fake_registry)  # the second run, now: everything is stored
    assert ResultStore(out).trainings() == trained
