"""The TopK-family batched math against sae-lens's own ``training_forward_pass``, member by member.

For each built-in TopK-family architecture, a 4-member cohort (trained and the three baselines that
train, built with ``training.trainer.build_cell`` exactly as ``train_cell`` does; the
frozen-encoder member has ``rescale_acts_by_decoder_norm`` off) gets random per-member dead-latent
masks (none / fewer than ``d_in // 2`` / many) so the AuxK term runs in all its branches. Loss,
every loss term, every parameter gradient, the latent fire counts and BatchTopK's threshold update
must equal sae-lens's: float64 to 1e-12 relative (dense and sparse step), float32 to 1e-5 (sparse).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _gauss_set import GaussSet  # noqa: E402
from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402
from saebench_sanity.training.batched import StepCtx, batched_for  # noqa: E402
from saebench_sanity.training.batched.topk import BatchTopKBatched, MatryoshkaBatchTopKBatched, TopKBatched  # noqa: E402
from saebench_sanity.training.trainer import build_cell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
D_IN, D_SAE, K, BATCH = 12, 40, 4, 64
TRAIN = TrainingConfig(steps=10, batch_size=BATCH, lr=1e-3, n_init_samples=256)
COHORT = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
CLASSES = {"topk": TopKBatched, "batchtopk": BatchTopKBatched, "matryoshka": MatryoshkaBatchTopKBatched}


def _data():
    """contract-gauss: the shared Gaussian test set (tests/_gauss_set.py)."""
    return GaussSet("contract-gauss", D_IN)


def _cohort(arch: str, dtype):
    saes = []
    for mode in COHORT:
        sae, _, _ = build_cell(ARCHS[arch], MODE_SPECS[mode], _data(), d_sae=D_SAE, target_l0=K, arch_overrides={},
                               mode_params={}, training=TRAIN, seed=5)
        sae.to(dtype)
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold = torch.tensor(0.3, dtype=torch.float64)
        saes.append(sae)
    with torch.no_grad():  # most of member 1's pre-activations negative: TopK keeps some, ReLU zeroes them
        saes[1].b_enc.sub_(4.0)
    return saes


def _dead_masks():
    g = torch.Generator().manual_seed(11)
    masks = torch.zeros(len(COHORT), D_SAE, dtype=torch.bool)
    masks[1, torch.randperm(D_SAE, generator=g)[:3]] = True  # fewer dead than d_in // 2 = 6
    masks[2, torch.randperm(D_SAE, generator=g)[:25]] = True  # many dead
    masks[3, torch.randperm(D_SAE, generator=g)[:6]] = True  # exactly k_aux
    return masks


def _stack(arch_obj, saes):
    p, leaves = {}, {}
    for name in arch_obj.param_names:
        t = torch.stack([getattr(s, name).detach().clone() for s in saes])
        if name in getattr(arch_obj, "transposed", ()):
            leaf = t.transpose(1, 2).contiguous().requires_grad_(True)
            p[name], leaves[name] = leaf.transpose(1, 2), leaf
        else:
            leaf = t.requires_grad_(True)
            p[name], leaves[name] = leaf, leaf
    return p, leaves


def _grad(arch_obj, leaves, name, i):
    g = leaves[name].grad[i]
    return g.T if name in getattr(arch_obj, "transposed", ()) else g


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("arch", sorted(CLASSES))
@pytest.mark.parametrize("with_dead", [False, True])
def test_member_equals_sae_lens_float64(arch, sparse, with_dead):
    from sae_lens.saes.sae import TrainStepInput

    saes = _cohort(arch, torch.float64)
    arch_obj = CLASSES[arch](sparse=sparse)
    assert all(type(batched_for(s)) is CLASSES[arch] for s in saes)
    state = arch_obj.init_state(saes)
    assert state["rescale"].tolist() == [True, True, True, False]  # frozen_encoder turned it off
    x = next(_data().train_batches(BATCH, 1)).to(torch.float64)
    dead = _dead_masks() if with_dead else None
    p, leaves = _stack(arch_obj, saes)
    out = arch_obj.loss(p, x, state, StepCtx(step=0, coefficients={}, dead_neuron_mask=dead))
    out.total.sum().backward()
    for i, sae in enumerate(saes):
        ref = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, n_training_steps=0,
                                                       dead_neuron_mask=None if dead is None else dead[i],
                                                       is_logging_step=False))
        ref.loss.backward()
        assert _rel(out.total[i], ref.loss) < 1e-12
        assert set(out.losses) == set(ref.losses)
        for key, value in ref.losses.items():
            assert float(abs(out.losses[key][i] - value)) <= 1e-12 * max(1.0, float(abs(value))), key
        if with_dead and i > 0:
            assert float(ref.losses["auxiliary_reconstruction_loss"]) > 0  # the AuxK branch really ran
        assert torch.equal(out.fire_counts[i], (ref.feature_acts != 0).to(torch.float64).sum(0))
        for name in arch_obj.param_names:
            param = getattr(sae, name)
            if param.requires_grad:
                assert _rel(_grad(arch_obj, leaves, name, i), param.grad) < 1e-11, (i, name)
        if arch != "topk":
            assert abs(float(state["topk_threshold"][i]) - float(sae.topk_threshold)) < 1e-14


@pytest.mark.parametrize("arch", sorted(CLASSES))
def test_sparse_step_equals_sae_lens_float32(arch):
    from sae_lens.saes.sae import TrainStepInput

    saes = _cohort(arch, torch.float32)
    arch_obj = CLASSES[arch](sparse=True)
    state = arch_obj.init_state(saes)
    x = next(_data().train_batches(BATCH, 2))
    dead = _dead_masks()
    p, leaves = _stack(arch_obj, saes)
    out = arch_obj.loss(p, x, state, StepCtx(step=0, coefficients={}, dead_neuron_mask=dead))
    out.total.sum().backward()
    for i, sae in enumerate(saes):
        ref = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, n_training_steps=0,
                                                       dead_neuron_mask=dead[i], is_logging_step=False))
        ref.loss.backward()
        assert _rel(out.total[i], ref.loss) < 1e-5
        for name in arch_obj.param_names:
            param = getattr(sae, name)
            if param.requires_grad:
                assert _rel(_grad(arch_obj, leaves, name, i), param.grad) < 1e-5, (i, name)


def test_members_are_independent():
    """Changing member 0's parameters changes nothing of member 1's loss or gradients."""
    saes = _cohort("batchtopk", torch.float64)
    x = next(_data().train_batches(BATCH, 1)).to(torch.float64)
    results = []
    for perturb in (False, True):
        arch_obj = BatchTopKBatched(sparse=True)
        state = arch_obj.init_state(saes)
        p, leaves = _stack(arch_obj, saes)
        if perturb:
            with torch.no_grad():
                leaves["W_dec"][0].mul_(3.0)
                leaves["b_dec"][0].add_(1.0)
        out = arch_obj.loss(p, x, state, StepCtx(step=0, coefficients={}, dead_neuron_mask=_dead_masks()))
        out.total.sum().backward()
        results.append((out.total.detach(), {n: leaves[n].grad.clone() for n in leaves}, state["topk_threshold"]))
    (t0, g0, th0), (t1, g1, th1) = results
    assert float(t0[0]) != float(t1[0])
    assert torch.equal(t0[1:], t1[1:]) and torch.equal(th0[1:], th1[1:])
    for name in g0:
        assert torch.equal(g0[name][1:], g1[name][1:]), name


def test_unsupported_configs_fall_back_to_solo():
    from sae_lens.saes.topk_sae import TopKTrainingSAE

    saes = _cohort("matryoshka", torch.float32)
    saes[0].cfg.use_matryoshka_aux_loss = True
    assert batched_for(saes[0]) is None
    topk = _cohort("topk", torch.float32)[0]
    topk.cfg.normalize_activations = "layer_norm"
    assert batched_for(topk) is None

    class Plugin(TopKTrainingSAE):  # a subclass may have other math: never the built-in batched one
        pass

    plugin = Plugin(_cohort("topk", torch.float32)[1].cfg)
    assert batched_for(plugin) is None
