"""scripts/kernel-drift.py's --env option, which docs/limitations.md's MKL paragraph is measured with:
settings are split on ';' (MKL_CBWR's values hold commas), and the folders are named after them."""

import argparse
import json

import pytest
from _scripts import load_script


def _script():
    return load_script("kernel-drift.py")


def test_env_settings_keep_commas_and_name_their_folders():
    kd = _script()
    env = kd.parse_env("MKL_CBWR=AVX2,STRICT; ATEN_CPU_CAPABILITY=avx2")
    assert env == {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2"}
    assert kd.env_label(env) == "ATEN_CPU_CAPABILITY=avx2-MKL_CBWR=AVX2+STRICT"
    assert kd.env_label(dict(kd.CAPPED)) == "capped"


@pytest.mark.parametrize("text", ["MKL_CBWR", "=AVX2", "", " ; "])
def test_env_settings_without_a_name_and_value_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        _script().parse_env(text)


def test_fingerprints_say_same_bits_or_how_far_apart_across_machines(tmp_path):
    """--record / --against (docs/limitations.md's cross-make check): equal decoders are the same bits,
    one weight of 1,024 nudged by 1e-9 of the largest is reported as its root mean square (1e-9 / 32,
    within the 16 projections' spread), and a record merges and replaces."""
    import torch

    kd = _script()
    w = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scores = {"reconstruction.explained_variance": 0.5, "seconds": 1.0, "cpu_kernels": {"processor": "x"}}
    mine = kd.fingerprint(w, scores)
    assert kd.compare(mine, kd.fingerprint(w.clone(), scores)) == "same bits"
    assert mine["scores"] == {"reconstruction.explained_variance": 0.5} and mine["cpu_kernels"] == {"processor": "x"}
    nudged = w.clone()
    nudged[3, 5] += 1e-9 * float(w.abs().max())
    line = kd.compare(kd.fingerprint(nudged, {**scores, "reconstruction.explained_variance": 0.5 + 2e-6}), mine)
    rms = float(line.split("rms ")[1].split()[0])
    assert line.startswith("differs") and 1e-9 / 32 / 2 < rms < 1e-9 / 32 * 2 and "explained_variance +2.0e-06" in line
    assert kd.compare(kd.fingerprint(w.float(), scores), mine).startswith("not the same cell")
    assert kd.compare(kd.fingerprint(nudged, {**scores, "threads": 4}), {**mine, "threads": 2}).endswith(
        "(threads 4 here, 2 there)")

    path = tmp_path / "record.json"
    kd.write_record(path, {"b": mine})
    kd.write_record(path, {"a": mine, "b": kd.fingerprint(nudged, scores)})
    runs = json.loads(path.read_text())["runs"]
    assert list(runs) == ["a", "b"] and runs["b"]["w_dec_sha256"] != mine["w_dec_sha256"]
    assert kd.record_key("s", "relu", "float64", 200, "native", True) == "s/relu/float64/200/native"


def test_against_a_file_that_is_not_a_record_stops_before_training(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert _script().main(["--against", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "--record FILE" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_busy_machine_is_named_before_the_runs_and_an_idle_one_is_not():
    """Each run trains at torch's default threads (one per core), which stall beside other work;
    the runs' ``saebench run --quiet`` would not say so, so the script does."""
    script = _script()
    from saebench_sanity.executors.base import default_jobs

    cores = default_jobs()
    if cores < 2:
        pytest.skip("one core: torch's default is one thread, which cannot oversubscribe")
    assert script.busy_warning(load=0.0) is None
    msg = script.busy_warning(load=float(cores))
    assert msg is not None and msg.startswith("warning: the machine's load is already") and "\n" not in msg
