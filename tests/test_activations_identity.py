"""A real set's identity is its recipe, its numbers are checked by a fingerprint within a tolerance.

What each test shows (docs/real-activations.md, "Identity and reproducibility"):
* same machine, same inputs: shard bytes identical (bit for bit);
* the CPU kernels of another machine (instruction set capped in a subprocess) or activations
  perturbed by ~1e-7: shard bytes differ, identity equal, fingerprints match within tolerance;
* another hook point, other tokens, other weights: another identity;
* activations scaled by 1.01: the fingerprint comparison fails, one line per statistic group;
* ``saebench activations fingerprint`` / ``verify --against``: the file round trip and exit codes.
On the tiny random Llama and pydoc corpus of test_activations_store; nothing from a hub.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from _kernels import CAPPED_KERNELS

torch = pytest.importorskip("torch")

from saebench_sanity.activations import fingerprint as fp  # noqa: E402
from saebench_sanity.activations import store as st  # noqa: E402
from saebench_sanity.models import hook_points  # noqa: E402
from saebench_sanity.models.loading import load_causal_lm  # noqa: E402
from conftest import tiny_store_env  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_store_env(tmp_path_factory.mktemp("identity"))


def _build(env, root, name="tiny-set", bundle=None, **over):
    base, default_bundle, cfg = env
    return st.build_store(name, replace(cfg, **over), base / root, progress=False, model_bundle=bundle or default_bundle)


def _shard_hashes(path):
    m = st.read_manifest(path)
    return [m["eval_shard"]["sha256"]] + [s["sha256"] for s in m["shards"]]


def _perturbed_record(factor_fn):
    real = hook_points.record

    def rec(*args, **kw):
        acts = real(*args, **kw)
        return acts * factor_fn(acts)

    return rec


def _jitter(acts):
    """Relative changes of +-3e-7 (a few float32 ulps), the size of a kernel difference."""
    g = torch.Generator().manual_seed(int(acts.numel()))
    return 1 + 3e-7 * (torch.randint(0, 2, acts.shape, generator=g) * 2 - 1)


def test_same_machine_same_inputs_give_identical_bytes(env):
    a, b = _build(env, "a"), _build(env, "b")
    assert _shard_hashes(a) == _shard_hashes(b)
    assert st.content_hash(a) == st.content_hash(b)  # the same build: results say so (data_sha256)
    assert st.read_manifest(a)["fingerprint"] == st.read_manifest(b)["fingerprint"]
    assert fp.compare(st.fingerprint(a), st.fingerprint(b), rtol=0.0) == []


def test_bytes_perturbed_by_1e7_keep_the_identity_and_match_the_fingerprint(env, monkeypatch):
    a = _build(env, "a")
    monkeypatch.setattr(hook_points, "record", _perturbed_record(_jitter))
    b = _build(env, "jitter")
    assert all(x != y for x, y in zip(_shard_hashes(a), _shard_hashes(b)))  # every shard's bytes differ
    assert st.identity_hash(a) == st.identity_hash(b)
    assert st.content_hash(a) != st.content_hash(b)  # another build of the recipe: its results say which
    ma, mb = st.read_manifest(a), st.read_manifest(b)
    assert ma["normalization"]["scaling_factor"] != mb["normalization"]["scaling_factor"]  # floats differ...
    assert st.identity(ma) == st.identity(mb)  # ...the recipe does not
    assert fp.compare(st.fingerprint(a), st.fingerprint(b)) == []
    assert 0 < max(fp.max_deviation(st.fingerprint(a), st.fingerprint(b)).values()) < 1e-5
    # what keys the cells (harness.plan): the set's manifest hash, equal for both builds
    from saebench_sanity.activations.real import RealActivationSet

    base, bundle, cfg = env
    params = {k: getattr(cfg, k) for k in ("model", "hook_point", "corpus", "context_len", "n_train_contexts",
                                           "n_eval_contexts", "contexts_per_shard", "batch_size")}
    sa, sb = (RealActivationSet("tiny-set", root=base / r, model_bundle=bundle, **params) for r in ("a", "jitter"))
    assert sa.normalizer.scale != sb.normalizer.scale and sa.manifest_hash() == sb.manifest_hash()
    assert (sa.content_sha256, sb.content_sha256) == (st.content_hash(a), st.content_hash(b))


def test_scaled_activations_fail_the_fingerprint_with_one_line_per_statistic_group(env, monkeypatch):
    a = _build(env, "a")
    monkeypatch.setattr(hook_points, "record", _perturbed_record(lambda acts: 1.01))
    b = _build(env, "scaled")
    assert st.identity_hash(a) == st.identity_hash(b)  # same recipe...
    lines = fp.compare(st.fingerprint(a), st.fingerprint(b))  # ...different numbers
    labels = {line.split(":")[0] for line in lines}
    assert len(lines) == len(labels)  # one line per group, not per dimension
    assert {"train per-dim rms", "eval per-dim rms", "train mean squared norm", "eval row norms",
            "eval row projections"} <= labels
    sq = next(line for line in lines if line.startswith("eval mean squared norm"))
    assert "0.02 x itself" in sq  # 1.01^2 - 1 = 0.0201
    # a 1% change is far outside the tolerance, a 1e-6 change inside it
    devs = fp.max_deviation(st.fingerprint(a), st.fingerprint(b))
    assert devs["eval row norms"] == pytest.approx(0.01, rel=1e-4)


def test_other_hook_point_tokens_or_weights_give_another_identity(env, tmp_path):
    base, bundle, cfg = env
    ref = st.identity_hash(_build(env, "a"))
    assert st.identity_hash(_build(env, "hook", hook_point="resid_post.0")) != ref
    # other tokens: one corpus document changed
    other = tmp_path / "corpus"
    other.mkdir()
    for p in sorted((base / "corpus").iterdir()):
        (other / p.name).write_text(p.read_text())
    (other / "00.txt").write_text((other / "00.txt").read_text().replace("the", "a"))
    changed = st.read_manifest(_build(env, "tokens", corpus=str(other)))
    assert st.identity(changed)["tokens"]["contexts_sha256"] != st.identity(st.read_manifest(base / "a" / "tiny-set"))["tokens"]["contexts_sha256"]
    assert st.stable_hash(st.identity(changed)) != ref
    # other weights behind the same folder and file hash: one weight changed in memory
    model, tok, info = bundle
    edited = load_causal_lm(cfg.model)[0]
    with torch.no_grad():
        edited.model.norm.weight[0] += 1e-3
    m = st.read_manifest(_build(env, "weights", bundle=(edited, tok, info)))
    assert m["model"]["sha256"] == info["sha256"] and m["model"]["weights_sha256"] != st.weights_hash(model)
    assert st.stable_hash(st.identity(m)) != ref
    # the forward batch size is not part of the recipe
    assert st.identity_hash(_build(env, "batch3", batch_size=3)) == ref


def test_weights_hash_covers_every_tensor_and_nothing_else():
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert st.weights_hash(a) == st.weights_hash(b)
    with torch.no_grad():
        b.bias[1] = torch.nextafter(b.bias[1], torch.tensor(9.0))  # one ulp
    assert st.weights_hash(a) != st.weights_hash(b)


_CHILD = """
import sys
from pathlib import Path
from saebench_sanity.activations import store as st
from saebench_sanity.models.loading import load_causal_lm
import torch
torch.set_num_threads(1)
base, root = Path(sys.argv[1]), sys.argv[2]
cfg = st.StoreConfig(model=str(base / "tiny"), hook_point="resid_post.1", corpus=str(base / "corpus"), context_len=16,
                     n_train_contexts=60, n_eval_contexts=8, contexts_per_shard=16, batch_size=8)
st.build_store("tiny-set", cfg, base / root, progress=False, model_bundle=load_causal_lm(base / "tiny"))
print(torch.backends.cpu.get_cpu_capability())
"""


@pytest.mark.slow
def test_another_cpus_kernels_change_the_bytes_not_the_identity_and_match_within_tolerance(env):
    """A build whose torch and MKL kernels are capped at SSE4.2 (a CPU without AVX), in a fresh
    process, next to this process's build."""
    base = env[0]
    a = _build(env, "a")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(base), "no-avx"], env={**os.environ, **CAPPED_KERNELS},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "DEFAULT"
    b = base / "no-avx" / "tiny-set"
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":  # this CPU has vector kernels: they round differently
        assert _shard_hashes(a) != _shard_hashes(b)
    assert st.identity_hash(a) == st.identity_hash(b)
    assert fp.compare(st.fingerprint(a), st.fingerprint(b)) == []


def test_fingerprint_statistics_match_a_direct_computation(env):
    from saebench_sanity.activations.reader import StoreReader

    path = _build(env, "a")
    reader = StoreReader(path)
    f = st.fingerprint(path)
    train = torch.cat([reader.load_shard(s)["activations"] for s in reader.manifest["shards"]]).double()
    ev = reader.eval_activations().double()
    assert f["train"]["rows"] == train.shape[0] and f["eval"]["rows"] == ev.shape[0]
    torch.testing.assert_close(torch.tensor(f["train"]["mean"], dtype=torch.float64), train.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.tensor(f["eval"]["rms"], dtype=torch.float64), ev.pow(2).mean(0).sqrt(), rtol=1e-12, atol=0)
    assert f["train"]["mean_sq_norm"] == pytest.approx(float(train.pow(2).sum(1).mean()), rel=1e-12)
    p = fp.projections(16)
    assert p.shape == (16, fp.K) and torch.allclose(p.norm(dim=0), torch.ones(fp.K, dtype=torch.float64))
    assert set(p.abs().flatten().tolist()) == {0.25}  # +-1/sqrt(16)
    assert torch.equal(p, fp.projections(16))  # fixed
    torch.testing.assert_close(torch.tensor(f["eval"]["proj_rms"], dtype=torch.float64), (ev @ p).pow(2).mean(0).sqrt(),
                               rtol=1e-12, atol=0)
    idx = f["eval_rows"]["index"]
    assert len(idx) == fp.N_ROWS and idx[0] == 0 and idx[-1] == ev.shape[0] - 1
    torch.testing.assert_close(torch.tensor(f["eval_rows"]["proj"], dtype=torch.float64), ev[idx] @ p, rtol=1e-12, atol=1e-12)
    assert f["identity_sha256"] == st.identity_hash(path) and f["recipe"] == st.identity(reader.manifest)


# -- CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(env, tmp_path, monkeypatch):
    from saebench_sanity import hookimpl
    from saebench_sanity import registry as registry_mod
    from saebench_sanity.activations.base import ActivationSetSpec
    from saebench_sanity.registry import Registry

    base, bundle, cfg = env
    params = {"name": "tiny-real", "root": str(tmp_path / "stores"), "model": cfg.model, "hook_point": cfg.hook_point,
              "corpus": cfg.corpus, "context_len": 16, "n_train_contexts": 60, "n_eval_contexts": 8,
              "contexts_per_shard": 16, "batch_size": 8, "d_in": 16}

    class Plugin:
        __name__ = "tests-tiny-real"

        @hookimpl
        def saebench_register_activation_sets(self, register):
            register(ActivationSetSpec(name="tiny-real", description="tiny real set (tests)",
                                       factory="saebench_sanity.activations.real:build_real_set", params=params,
                                       family="real", d_in=16))

    monkeypatch.setattr(registry_mod, "_DEFAULT", Registry(load_entry_points=False, extra_plugins=[Plugin()]))
    return tmp_path / "stores" / "tiny-real"


def test_cli_fingerprint_and_verify_against(cli_env, tmp_path, monkeypatch, capsys):
    from saebench_sanity.cli import main

    assert main(["activations", "build", "tiny-real", "--no-progress"]) == 0
    out = tmp_path / "fp.json"
    assert main(["activations", "fingerprint", "tiny-real", "--out", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert stored["identity_sha256"] == st.identity_hash(cli_env) and stored["set"] == "tiny-real"
    assert main(["activations", "verify", "tiny-real", "--against", str(out)]) == 0
    # another machine's build: other bytes, same recipe
    before = _shard_hashes(cli_env)
    assert main(["activations", "rm", "tiny-real"]) == 0
    monkeypatch.setattr(hook_points, "record", _perturbed_record(_jitter))
    assert main(["activations", "build", "tiny-real", "--no-progress"]) == 0
    assert _shard_hashes(cli_env) != before
    capsys.readouterr()
    assert main(["activations", "verify", "tiny-real", "--against", str(out)]) == 0
    assert capsys.readouterr().out == ""
    # a stored fingerprint of activations 1% larger: exit 1, one stdout line per mismatching group
    scaled = json.loads(out.read_text())
    for split in ("train", "eval"):
        scaled[split]["rms"] = [v * 1.01 for v in scaled[split]["rms"]]
    bad = tmp_path / "scaled.json"
    bad.write_text(json.dumps(scaled))
    assert main(["activations", "verify", "tiny-real", "--against", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [l for l in lines if l.startswith("tiny-real: ")] and len(lines) == 2
    assert "train per-dim rms: 16 of 16 differ by more than 0.0001" in lines[0]
    # ...which a loose enough tolerance accepts
    assert main(["activations", "verify", "tiny-real", "--against", str(bad), "--rtol", "0.02"]) == 0
    # a fingerprint of another recipe names the differing fields
    other = json.loads(out.read_text())
    other["identity_sha256"] = "f" * 64
    other["recipe"]["hook_point"] = "resid_post.0"
    (tmp_path / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["activations", "verify", "tiny-real", "--against", str(tmp_path / "other.json")]) == 1
    assert "recipe hook_point: resid_post.0 (stored) vs resid_post.1 (this build)" in capsys.readouterr().out
    # unreadable file, not a fingerprint: exit 2
    (tmp_path / "junk.json").write_text("{")
    assert main(["activations", "verify", "tiny-real", "--against", str(tmp_path / "junk.json")]) == 2
    assert main(["activations", "verify", "tiny-real", "--against", str(tmp_path / "missing.json")]) == 2
    assert "shards match" not in capsys.readouterr().err  # the file is read before any shard is re-hashed
    # a corrupted shard is exit 2 before any fingerprint comparison
    shard = cli_env / st.read_manifest(cli_env)["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["activations", "verify", "tiny-real", "--against", str(out)]) == 2


@pytest.mark.parametrize("rtol", ["nan", "-1", "inf", "x"])
def test_verify_refuses_a_tolerance_that_is_not_a_finite_number_at_least_0(cli_env, capsys, rtol):
    """A NaN tolerance would let every fingerprint match (every comparison with NaN is False), a
    negative one fail every one: one line naming --rtol, exit 2, before anything is read."""
    from saebench_sanity.cli import main

    with pytest.raises(SystemExit) as info:  # argparse's refusal
        main(["activations", "verify", "tiny-real", "--against", "fp.json", "--rtol", rtol])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --rtol" in err[0] and rtol in err[0]


@pytest.mark.parametrize("extra, named", [(["--tokens", "5"], "--tokens"), (["--no-bos", "--dtype", "float16"], "--dtype, --no-bos"),
                                          (["--massive-ratio", "3"], "--massive-ratio")])
def test_recipe_options_with_a_registered_set_are_refused_not_ignored(cli_env, capsys, extra, named):
    """``build tiny-real --tokens 5`` used to build (or keep) the registered recipe and say
    "built": the options describe a one-line new set only, so with a registered name they are an
    error naming them, exit 2, and nothing is built."""
    from saebench_sanity.cli import main

    assert main(["activations", "build", "tiny-real", "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "--name NAME --model M --hook-point H" in err[0], err
    assert not cli_env.exists()


def test_fingerprint_out_that_cannot_be_a_file_is_one_line(cli_env, tmp_path, capsys):
    """``fingerprint --out FILE/x`` (a path under a file) was an unexpected FileExistsError, exit 1;
    now it and a folder given as --out are one line naming --out, exit 2, before anything is read."""
    from saebench_sanity.cli import main

    (tmp_path / "file").write_text("")
    for out, said in ((tmp_path / "file" / "x.json", "is not a folder"), (tmp_path, "is a folder")):
        assert main(["activations", "fingerprint", "tiny-real", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--out" in err[0] and said in err[0], err
