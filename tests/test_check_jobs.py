"""`saebench check --jobs N`: the baseline seeds train and score in a pool of processes and the
report is the one `--jobs 1` gives, number for number; the pool's cached baselines serve a
re-check that trains nothing."""

import argparse
import json

import pytest
import torch

from saebench_sanity import cli_check
from saebench_sanity.architectures.checkpoint import save_checkpoint
from saebench_sanity.check import CheckOptions
from saebench_sanity.config import TrainingConfig
from saebench_sanity.errors import ConfigError
from saebench_sanity.registry import get_registry
from saebench_sanity.training.trainer import train_cell

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ARGS = ["--set", "synth-easy", "--modes", "frozen_decoder,frozen_encoder", "--seeds", "0,1,2", "--steps", "120",
        "--metrics", "reconstruction.explained_variance,reconstruction.mse,reconstruction.l0"]


def _check(sae, cache, out, *extra):
    parser = argparse.ArgumentParser()
    cli_check.add_parser(parser.add_subparsers(dest="command"))
    code = cli_check.run(parser.parse_args(["check", str(sae), *ARGS, "--cache-dir", str(cache), "--json", str(out),
                                            *extra]))
    return code, json.loads(out.read_text())


def test_jobs_2_gives_the_report_of_jobs_1_and_its_cache_serves_a_recheck(tmp_path):
    reg = get_registry()
    aset = reg.get("activation_set", "synth-easy").build()
    res = train_cell(reg.get("architecture", "topk"), reg.get("training_mode", "trained"), aset, d_sae=64,
                     target_l0=3, arch_overrides={}, mode_params={},
                     training=TrainingConfig(steps=150, batch_size=256, lr=3e-3), seed=5)
    sae = tmp_path / "sae"
    save_checkpoint(res.sae, sae)

    code1, one = _check(sae, tmp_path / "cache-1", tmp_path / "one.json", "--jobs", "1")
    code2, two = _check(sae, tmp_path / "cache-2", tmp_path / "two.json", "--jobs", "2")
    assert code1 == code2
    assert not any(r["cached"] for runs in two["training"].values() for r in runs)  # the pool trained them
    assert two == one  # every score, bound, verdict, step count and L0, bit for bit
    assert [r["seed"] for r in two["training"]["frozen_decoder"]] == [0, 1, 2]
    # the checkpoints the pool wrote are the ones --jobs 1 wrote (same files, same hashes)
    for key_dir in sorted((tmp_path / "cache-1" / "checkpoints").iterdir()):
        other = tmp_path / "cache-2" / "checkpoints" / key_dir.name
        assert (other / "sae_weights.safetensors").read_bytes() == (key_dir / "sae_weights.safetensors").read_bytes()

    # so a re-check (in this process) reads the pool's cache and trains nothing
    code3, again = _check(sae, tmp_path / "cache-2", tmp_path / "again.json", "--jobs", "1")
    assert code3 == code1 and all(r["cached"] for runs in again["training"].values() for r in runs)
    for runs in again["training"].values():
        for r in runs:
            r["cached"] = False
    assert again == one


def test_jobs_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="--jobs"):
        CheckOptions(target="x", jobs=0)
    parser = argparse.ArgumentParser()
    cli_check.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["check", "x", "--jobs", "0"])
    assert torch.get_num_threads() == 1
