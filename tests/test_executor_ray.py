"""The executor plugin kind and the ``ray`` executor.

Fast tests: both built-ins are registered, a wrong option / Ray missing / an address nobody
answers are one-line errors with exit 2. Slow tests (a local Ray instance started here with
``ray.init(num_cpus=2)``, then a ``ray start --head`` cluster on 127.0.0.1 joined with
``--address``): a tiny config gives checkpoints and records identical, byte for byte and score for
score, to the local executor's; a worker SIGKILLed mid-task is retried and every cell is written
exactly once; a task that raises (here: a set whose manifest differs from the plan's) fails its
cohort's cells with the error while the other cohorts finish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore

try:
    import ray
except ImportError:  # the [ray] extra is not installed: the Ray tests skip, the rest run
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason='ray is not installed (pip install "saebench-sanity[ray]")')

TOML = """
[run]
name = "tiny"
output_dir = "{out}"
sets = ["synth-easy"]
architectures = ["topk", "batchtopk"]
modes = ["trained", "frozen_decoder", "untrained"]
seeds = [0, 1]
metrics = ["reconstruction", "ground_truth"]

[training]
batch_size = 64
curve_every = 5
n_init_samples = 256

[sets.synth-easy]
steps = 15
batch_size = 64
d_sae = 32
"""
N_CELLS, N_COHORTS = 12, 4


def write_cfg(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(TOML.format(out=folder / "out"))
    return path


def one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # (warnings may precede it)
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fingerprint(root: Path) -> dict[str, object]:
    """Per cell: sha256 of the checkpoint's weights, its cfg.json and train.json, and the record,
    without wall-clock fields. Two runs with equal fingerprints stored the same SAEs and scores."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "seconds"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    store = ResultStore(root)
    out: dict[str, object] = {}
    for key in store.result_keys():
        folder = store.checkpoint_dir(key)
        # weights byte for byte; sae-lens's cfg.json by content (its key order varies from run to run)
        files = {p.name: json.loads(p.read_text()) if p.suffix == ".json" else hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(folder.iterdir()) if p.is_file() and p.name not in ("train.json", "COMPLETE")}
        out[key] = {"files": files, "train": strip(store.load_train_info(key)), "record": strip(store.load_result(key))}
    return out


# -- fast ----------------------------------------------------------------------------------------
def test_both_executors_are_registered_with_their_options():
    from saebench_sanity.registry import Registry

    reg = Registry(load_entry_points=False)
    assert reg.names("executor") == ["local", "ray"]
    assert reg.get("executor", "local").options == ("jobs",)
    assert reg.get("executor", "ray").options == ("jobs", "address")
    assert "saebench-sanity[ray]" in reg.get("executor", "ray").describe()["install"]


def test_an_option_the_executor_does_not_take_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, main(["run", "--quick", "--address", "127.0.0.1:1", "--out", str(tmp_path / "o")]))
    assert "--address: not an option of the 'local' executor" in line
    assert not (tmp_path / "o").exists()
    line = one_line_error(capsys, main(["run", "--quick", "--executor", "dask", "--out", str(tmp_path / "o")]))
    assert "unknown executor 'dask'" in line


def test_ray_missing_is_one_line_with_the_install_command(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    line = one_line_error(capsys, main(["run", "--quick", "--executor", "ray", "--out", str(tmp_path / "o")]))
    assert line == ('error: --executor ray needs Ray, which is not installed here; install it with: '
                    'pip install "saebench-sanity[ray]"')
    assert not (tmp_path / "o").exists()


@needs_ray
def test_an_address_nobody_answers_is_one_line_within_seconds(capsys, tmp_path):
    port = free_port()  # bound a moment ago, closed: nothing listens there now
    t0 = time.perf_counter()
    line = one_line_error(capsys, main(["run", "--quick", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                                        "--out", str(tmp_path / "o")]))
    assert time.perf_counter() - t0 < 30
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in line
    assert "ray start --head" in line
    assert "is not host:port" in one_line_error(capsys, main(["run", "--quick", "--executor", "ray", "--address", "nowhere"]))


def test_the_remote_protocol_stores_what_the_in_process_run_stores_and_resumes_from_bytes(tmp_path, fake_registry):
    """What the pool and Ray workers run (``executors.remote``), called in this process: the driver's
    store ends up as the in-process executor's; a resumed task scores a new metric on the
    checkpoint it carries as bytes, and sends no checkpoint back."""
    import torch

    from saebench_sanity import config
    from saebench_sanity.executors.remote import commit_reply, fully_cached, prepare_task, work_cohort
    from saebench_sanity.harness.executor import cohorts, execute
    from saebench_sanity.harness.plan import build_plan

    torch.set_num_threads(1)

    def cfg(out, metrics):
        return config.from_dict({"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained", "frozen_decoder"],
                                         "seeds": [0, 1], "metrics": metrics, "output_dir": str(tmp_path / out)},
                                 "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}})

    local = cfg("local", ["reconstruction"])
    plan = build_plan(local, fake_registry)
    execute(plan, ResultStore(local.output_dir), fake_registry)

    remote_cfg = cfg("remote", ["reconstruction"])
    store = ResultStore(remote_cfg.output_dir)
    for group in cohorts(plan.cells):
        assert not fully_cached(group, plan.metrics, store, force=False)
        task = prepare_task(group, plan.metrics, store, set_params=remote_cfg.set_params_for("tiny-gauss"), force=False,
                            device="cpu")
        assert task.seed == {}  # nothing stored yet
        commit_reply(work_cohort(task, registry=fake_registry), store)
    assert fingerprint(Path(remote_cfg.output_dir)) == fingerprint(Path(local.output_dir))
    assert set(store.trainings().values()) == {1} and len(store.trainings()) == 4

    plan2 = build_plan(cfg("remote", ["reconstruction", "latent-mean"]), fake_registry)
    for group in cohorts(plan2.cells):
        assert not fully_cached(group, plan2.metrics, store, force=False)
        task = prepare_task(group, plan2.metrics, store, set_params=remote_cfg.set_params_for("tiny-gauss"), force=False,
                            device="cpu")
        assert set(task.seed) == {c.key for c in group}  # checkpoints and records travel as bytes
        reply = work_cohort(task, registry=fake_registry)
        assert reply.checkpoints == {} and not any(o.trained_now for o in reply.outcomes)
        commit_reply(reply, store)
        assert fully_cached(group, plan2.metrics, store, force=False)
    assert set(store.trainings().values()) == {1}  # scored, not retrained
    for key in store.result_keys():
        assert {e["name"]: e["status"] for e in store.load_result(key)["metrics"].values()} == \
            {"reconstruction": "ok", "latent-mean": "ok"}


# -- slow: a real Ray instance ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The tiny config run by the local executor in this process (1 thread: the Ray workers'
    count), its fingerprint."""
    folder = tmp_path_factory.mktemp("local")
    assert main(["run", "--config", str(write_cfg(folder)), "--jobs", "1", "--threads", "1", "--no-plots",
                 "--quiet"]) == 0
    return fingerprint(folder / "out")


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance started here (2 CPUs); the executor uses this connection as it is."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


class TaskKiller(threading.Thread):
    """SIGKILLs the first Ray worker of this test's instance seen running a cohort task (Ray
    titles a busy worker ``ray::<task name>``), once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set() and not self.killed:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    title = (proc / "cmdline").read_bytes().split(b"\0")[0]
                except OSError:
                    continue
                if title.startswith(b"ray::saebench_cohort") and _descends_from(int(proc.name), me):
                    os.kill(int(proc.name), signal.SIGKILL)
                    self.killed.append(int(proc.name))
                    return
            time.sleep(0.05)


@needs_ray
@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_results_match_local(ray_instance, local_reference, tmp_path):
    cfg = write_cfg(tmp_path)
    killer = TaskKiller()
    killer.start()  # the first tasks import torch and sae-lens on cold workers: seconds to catch one
    try:
        assert main(["run", "--config", str(cfg), "--executor", "ray", "--no-plots", "--quiet"]) == 0
    finally:
        killer.stop.set()
        killer.join(5)
    assert len(killer.killed) == 1, "no cohort task was seen running"
    store = ResultStore(tmp_path / "out")
    assert len(store.trainings()) == N_CELLS and set(store.trainings().values()) == {1}  # none lost, none twice
    assert fingerprint(tmp_path / "out") == local_reference  # the same SAEs and scores, bit for bit

    # resume: nothing to train, nothing shipped; --force: every cell again, each once more
    assert main(["run", "--config", str(cfg), "--executor", "ray", "--no-plots", "--quiet"]) == 0
    assert set(store.trainings().values()) == {1}
    assert main(["run", "--config", str(cfg), "--executor", "ray", "--force", "--no-plots", "--quiet"]) == 0
    assert len(store.trainings()) == N_CELLS and set(store.trainings().values()) == {2}
    assert fingerprint(tmp_path / "out") == local_reference


def run_with_a_bad_cohort(config_path: Path, index: int):
    """The config run with the Ray executor, cohort ``index``'s set "differing" on the worker (its
    cells carry another manifest hash): ``(plan, store, bad cell keys, outcomes)``."""
    from saebench_sanity import config as config_mod
    from saebench_sanity.executors.ray_executor import RayExecutor
    from saebench_sanity.harness.executor import cohorts, execute
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.registry import get_registry

    cfg = config_mod.load(str(config_path))
    registry = get_registry()
    plan = build_plan(cfg, registry)
    bad = {c.key for c in cohorts(plan.cells)[index]}
    plan.cells[:] = [dataclasses.replace(c, set_manifest_hash="0" * 64) if c.key in bad else c for c in plan.cells]
    store = ResultStore(cfg.output_dir)
    return plan, store, bad, execute(plan, store, registry, executor=RayExecutor())


@needs_ray
@pytest.mark.slow
def test_a_task_that_raises_fails_its_cells_and_the_run_goes_on(ray_instance, tmp_path):
    plan, store, bad, outcomes = run_with_a_bad_cohort(write_cfg(tmp_path), 1)
    failed = {o.key: o for o in outcomes if o.status == "failed"}
    assert set(failed) == bad and len(outcomes) == N_CELLS
    for o in failed.values():
        assert o.error.startswith("activation set 'synth-easy' on worker") and "has manifest" in o.error
        assert o.error_kind == "input"
        assert store.load_result(o.key)["status"] == "failed" and store.load_result(o.key)["error"] == o.error
    assert sorted(store.trainings()) == sorted(c.key for c in plan.cells if c.key not in bad)


@needs_ray
@pytest.mark.slow
def test_a_cluster_joined_with_address_gives_the_local_results(local_reference, tmp_path, monkeypatch):
    if ray.is_initialized():  # this process joins the cluster below, not the module's instance
        ray.shutdown()
    port = free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))  # the console script installed beside this python
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RAY_AUTH_MODE": "token"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.2)
        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the head was started with token auth: join with the token
        cfg = write_cfg(tmp_path)
        assert main(["run", "--config", str(cfg), "--executor", "ray", "--address", f"127.0.0.1:{port}",
                     "--no-plots", "--quiet"]) == 0
        store = ResultStore(tmp_path / "out")
        assert len(store.trainings()) == N_CELLS and set(store.trainings().values()) == {1}
        assert fingerprint(tmp_path / "out") == local_reference
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=10)


UNIT_TOML = TOML.replace('seeds = [0, 1]', 'seeds = [0, 1, 2, 3, 4, 5]').replace(
    'modes = ["trained", "frozen_decoder", "untrained"]', 'modes = ["trained", "untrained"]')


@needs_ray
@pytest.mark.slow
def test_cohorts_on_one_stream_share_a_generator_task_and_store_what_the_local_executor_stores(
        ray_instance, tmp_path, caplog):
    """12 cohorts on 6 (set, seed) streams and 2 CPUs: 6 units of 2 cohorts, each a Ray generator
    task that yields one reply per cohort. The stored checkpoints and records equal, byte for
    byte and score for score, the local executor's (which runs the same units in one process);
    a cohort that raises inside a unit fails alone and its unit's other cohort is stored."""
    import logging

    def write(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "units.toml").write_text(UNIT_TOML.format(out=folder / "out"))
        return folder / "units.toml"

    local = write(tmp_path / "local")
    assert main(["run", "--config", str(local), "--jobs", "1", "--threads", "1", "--no-plots", "--quiet"]) == 0
    remote = write(tmp_path / "ray")
    with caplog.at_level(logging.INFO, logger="saebench_sanity.executors.ray_executor"):
        assert main(["run", "--config", str(remote), "--executor", "ray", "--no-plots", "--quiet"]) == 0
    assert [r.getMessage() for r in caplog.records if "Ray tasks" in r.getMessage()] == \
        ["12 cohorts in 6 Ray tasks (cohorts on one generated stream share a task)"]
    assert fingerprint(tmp_path / "ray" / "out") == fingerprint(tmp_path / "local" / "out")

    plan, store, bad, outcomes = run_with_a_bad_cohort(write(tmp_path / "bad"), 0)
    failed = {o.key: o for o in outcomes if o.status == "failed"}
    assert set(failed) == bad and len(outcomes) == 24
    assert all(o.error.startswith("activation set 'synth-easy' on worker") and o.error_kind == "input"
               for o in failed.values())
    assert sorted(store.trainings()) == sorted(c.key for c in plan.cells if c.key not in bad)
