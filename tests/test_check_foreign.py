"""`saebench check` on SAEs trained elsewhere, and the suite's own real-set checkpoints in SAELens.

A tiny random Llama (saved to a local folder) and a local corpus give a real activation set whose
normalization factor is far from 1 (~47: the tiny model's residual stream has a small norm), so
feeding an SAE the wrong space shows at once. An SAE trained with plain sae-lens on the set's raw
activations is checked and its explained variance compared with a direct computation; the suite's
checkpoints are loaded with ``SAE.load_from_disk`` and reconstruct raw activations.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_store_env  # noqa: E402

from saebench_sanity import hookimpl  # noqa: E402
from saebench_sanity.activations.base import ActivationSetSpec  # noqa: E402
from saebench_sanity.errors import ConfigError, DataError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SET = "tiny-real-check"
CHECK_METRICS = ("reconstruction.explained_variance", "reconstruction.mse")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """``(registry, activation set)``: the tiny real set registered as a plugin would register it."""
    from saebench_sanity.activations.real import RealActivationSet
    from saebench_sanity.registry import Registry

    base, bundle, cfg = tiny_store_env(tmp_path_factory.mktemp("foreign"))
    aset = RealActivationSet(SET, root=base / "stores", model_bundle=bundle, **asdict(cfg))
    aset.build(progress=False)

    class Plugin:
        __name__ = "tiny-real-plugin"

        @hookimpl
        def saebench_register_activation_sets(self, register):
            register(ActivationSetSpec(name=SET, description="tiny random Llama (tests)", factory=lambda: aset,
                                       family="real", d_in=aset.d_in,
                                       training={"d_sae": 32, "target_l0": 4, "batch_size": 64, "lr": 3e-3}))

    return Registry(load_entry_points=False, extra_plugins=[Plugin()]), aset


def _raw_batches(aset, batch_size: int, seed: int):
    return aset.reader.iter_batches(batch_size, seed, normalize=False)


@pytest.fixture(scope="module")
def sae_lens_sae(env, tmp_path_factory):
    """A TopK SAE trained by plain sae-lens (its own training forward pass and loss, Adam) on the
    set's RAW activations, saved with ``save_inference_model``: an SAE from elsewhere."""
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    _, aset = env
    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=aset.d_in, d_sae=32, k=4))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    batches = _raw_batches(aset, 64, seed=5)
    for step in range(300):
        out = sae.training_forward_pass(TrainStepInput(sae_in=next(batches), coefficients={}, dead_neuron_mask=None,
                                                       n_training_steps=step, is_logging_step=False))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("elsewhere") / "sae"
    sae.save_inference_model(path)
    return path


def _ev(x, x_hat) -> float:
    """Textbook EV, written out here independently of the metrics module."""
    x, x_hat = x.double(), x_hat.double()
    return float(1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def _check(env, target, cache, **kw):
    from saebench_sanity.check import CheckOptions, run_check

    registry, _ = env
    said: list[str] = []
    opts = CheckOptions(target=str(target), set_name=SET, modes=("frozen_decoder",), seeds=(0, 1, 2), steps=40,
                        metrics=CHECK_METRICS, cache_dir=cache, **kw)
    return run_check(opts, registry, progress=said.append), said


def test_an_sae_lens_sae_on_raw_activations_gets_the_ev_of_a_direct_computation(env, sae_lens_sae, tmp_path):
    from sae_lens import SAE

    _, aset = env
    scale = aset.normalizer.scale
    assert scale > 10  # the spaces are far apart: a mix-up cannot hide
    sae = SAE.load_from_disk(str(sae_lens_sae))
    raw = aset.reader.eval_activations(normalize=False)
    with torch.no_grad():
        direct = _ev(raw, sae.decode(sae.encode(raw)))
        served = aset.eval_activations()  # what the set serves: normalized
        wrong = _ev(served, sae.decode(sae.encode(served)))
    assert direct > 0.5 and wrong < direct - 0.05  # feeding it the served space would score it wrongly

    report, said = _check(env, sae_lens_sae, tmp_path / "cache")
    rows = {r["score"]: r for r in report.rows}
    assert rows["explained_variance"]["sae"] == pytest.approx(direct, rel=1e-5, abs=1e-6)
    # MSE is in the set's served units (baselines are scored there too): scale^2 x the raw MSE
    with torch.no_grad():
        raw_mse = float(((raw.double() - sae.decode(sae.encode(raw)).double()) ** 2).sum(1).mean())
    assert rows["mse"]["sae"] == pytest.approx(raw_mse * scale ** 2, rel=1e-4)
    assert report.sae["input_scale"] == 1.0 and report.sae["set_scale"] == pytest.approx(scale)
    assert report.sae["l0"] == pytest.approx(4.0)
    # each baseline's steps and convergence are stated; nothing was cached yet
    runs = report.training["frozen_decoder"]
    assert [r["seed"] for r in runs] == [0, 1, 2] and all(0 < r["steps"] <= 40 and not r["cached"] for r in runs)
    assert any("training baselines" in m for m in said)

    # another SAE of the same shape and sparsity: the baselines come from the cache, nothing trains
    again, said = _check(env, sae_lens_sae, tmp_path / "cache")
    assert all(r["cached"] for r in again.training["frozen_decoder"])
    assert not any("training baselines" in m for m in said)
    assert [r["baselines"] for r in again.rows] == [r["baselines"] for r in report.rows]


def test_an_sae_recording_its_own_normalization_gets_inputs_in_that_space(env, sae_lens_sae, tmp_path):
    """The same SAE re-expressed for inputs ``x * f`` (cfg ``expected_average_only_in``, factor in
    sae-lens's ``activation_scaler.json``) scores the same; without the factor it is refused."""
    from sae_lens import SAE

    _, aset = env
    factor = 3.0
    sae = SAE.load_from_disk(str(sae_lens_sae))
    sae.fold_activation_norm_scaling_factor(1 / factor)  # now expects raw * factor
    sae.cfg.normalize_activations = "expected_average_only_in"
    folder = tmp_path / "scaled"
    sae.save_model(folder)
    with pytest.raises(DataError, match="records no scaling factor"):
        _check(env, folder, tmp_path / "cache")
    (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": factor}))
    report, _ = _check(env, folder, tmp_path / "cache")
    plain, _ = _check(env, sae_lens_sae, tmp_path / "cache")
    assert report.sae["input_scale"] == factor
    for a, b in zip(report.rows, plain.rows):
        assert a["sae"] == pytest.approx(b["sae"], rel=1e-4)


def test_a_suite_trained_real_set_sae_loads_in_sae_lens_and_takes_raw_activations(env, tmp_path):
    from sae_lens import SAE

    from saebench_sanity.activations.real import checkpoint_in_set_space, set_scale
    from saebench_sanity.architectures.checkpoint import FOLDED_SCALE_KEY, save_checkpoint
    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.registry import get_registry
    from saebench_sanity.training.trainer import train_cell

    _, aset = env
    reg = get_registry()
    for arch in ("topk", "jumprelu"):
        res = train_cell(reg.get("architecture", arch), reg.get("training_mode", "trained"), aset, d_sae=32,
                         target_l0=4, arch_overrides={}, mode_params={},
                         training=TrainingConfig(max_steps=60, batch_size=64, lr=3e-3), seed=0)
        path = save_checkpoint(res.sae, tmp_path / arch, activation_scale=set_scale(aset))
        sae = SAE.load_from_disk(str(path))  # plain sae-lens
        assert sae.cfg.normalize_activations == "none"
        assert sae.cfg.metadata[FOLDED_SCALE_KEY] == pytest.approx(aset.normalizer.scale)
        raw = aset.reader.eval_activations(normalize=False)
        unfolded = tmp_path / f"{arch}-unfolded"
        save_checkpoint(res.sae, unfolded)  # the set's space, as checkpoints were written before folding
        ref = SAE.load_from_disk(str(unfolded))
        s = aset.normalizer.scale
        with torch.no_grad():
            got = sae.decode(sae.encode(raw))
            want = ref.decode(ref.encode(raw * s)) / s
            assert torch.equal(sae.encode(raw) != 0, ref.encode(raw * s) != 0) or arch == "jumprelu"
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(raw.abs().max()))
            assert _ev(raw, got) == pytest.approx(_ev(raw * s, ref.decode(ref.encode(raw * s))), abs=1e-5)
            # what metrics see: the folded checkpoint in the set's space, and an old unfolded one as it is
            served = aset.eval_activations()
            for ckpt in (sae, ref):
                view = checkpoint_in_set_space(ckpt, aset)
                assert torch.allclose(view.decode(view.encode(served)), want * s, rtol=1e-4,
                                      atol=1e-5 * float(served.abs().max()))
            assert checkpoint_in_set_space(ref, aset) is ref


def test_d_in_mismatch_and_an_ambiguous_architecture_are_one_line_errors(env, sae_lens_sae, tmp_path):
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    from saebench_sanity.check import architecture_of
    from saebench_sanity.registry import Registry

    narrow = tmp_path / "narrow"
    TopKSAE(TopKSAEConfig(d_in=8, d_sae=16, k=2)).save_model(narrow)
    with pytest.raises(DataError, match=f"does not match activation set '{SET}'"):
        _check(env, narrow, tmp_path / "cache")

    class Twin:
        __name__ = "twin-topk"

        @hookimpl
        def saebench_register_architectures(self, register):
            base = Registry(load_entry_points=False).get("architecture", "topk")
            register(dataclasses.replace(base, name="topk-twin", description="shares sae-lens topk (tests)"))

    reg = Registry(load_entry_points=False, extra_plugins=[Twin()])
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(sae_lens_sae))
    with pytest.raises(ConfigError, match="choose one with --arch"):
        architecture_of(sae, reg)
    assert architecture_of(sae, reg, "topk-twin").name == "topk-twin"
    with pytest.raises(ConfigError, match="builds sae-lens 'jumprelu'"):
        architecture_of(sae, reg, "jumprelu")


def test_a_local_release_gets_its_set_from_the_sae_metadata(env, sae_lens_sae, tmp_path, monkeypatch):
    """``check RELEASE --sae-id ID`` on a local folder laid out like a release: model, hook point
    and context come from the SAE's SAELens metadata; the matching set is built over the named
    corpus on first use and reused after."""
    from sae_lens import SAE

    from saebench_sanity.activations.reader import StoreReader
    from saebench_sanity.check import CheckOptions, hook_point_of, run_check
    from saebench_sanity.registry import Registry

    _, aset = env
    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path / "cache"))
    sae = SAE.load_from_disk(str(sae_lens_sae))
    sae.cfg.metadata.model_name = aset.config.model  # the tiny model's local folder
    sae.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    sae.cfg.metadata.context_size = 16
    sae_id = "blocks.1.hook_resid_post/width_32"
    sae.save_model(tmp_path / "release" / sae_id)

    def check():
        opts = CheckOptions(target=str(tmp_path / "release"), sae_id=sae_id, corpus=aset.config.corpus,
                            n_train_tokens=600, n_eval_tokens=120, modes=("frozen_decoder",), seeds=(0, 1, 2),
                            steps=40, metrics=CHECK_METRICS, cache_dir=tmp_path / "baselines")
        return run_check(opts, Registry(load_entry_points=False))

    report = check()
    assert report.set_name.startswith("auto-tiny-resid-post-1-")
    reader = StoreReader(tmp_path / "cache" / "activations" / report.set_name)
    assert reader.manifest["hook_point"] == "resid_post.1" and reader.manifest["tokens"]["context_len"] == 16
    raw = reader.eval_activations(normalize=False)
    with torch.no_grad():
        direct = _ev(raw, sae.decode(sae.encode(raw)))
    rows = {r["score"]: r for r in report.rows}
    assert rows["explained_variance"]["sae"] == pytest.approx(direct, rel=1e-5, abs=1e-6)
    again = check()  # the same recipe: the same stored set and cached baselines
    assert again.set_name == report.set_name and all(r["cached"] for r in again.training["frozen_decoder"])
    assert hook_point_of("blocks.3.hook_resid_pre") == "resid_post.2"
    with pytest.raises(DataError, match="no counterpart"):
        hook_point_of("blocks.3.attn.hook_z")
    with pytest.raises(DataError, match="has no SAE id"):
        run_check(CheckOptions(target=str(tmp_path / "release"), sae_id="nope"), Registry(load_entry_points=False))


@pytest.mark.parametrize("hook_point", ["resid_post.0", "resid_post.12", "mlp_out.3", "attn_out.29"])
def test_the_hook_name_a_checkpoint_records_reads_back_as_its_hook_point(hook_point):
    from saebench_sanity.check import hook_point_of
    from saebench_sanity.models.hook_points import transformer_lens_name

    name = transformer_lens_name(hook_point)
    assert name.startswith("blocks.") and hook_point_of(name) == hook_point
