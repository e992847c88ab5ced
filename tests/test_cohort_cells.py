"""train_cells (the harness's cohort path): each batched member gives what the solo path (sae-lens's
SAETrainer, ``CellTrainer``) gives that cell under the same controls."""

import dataclasses

import pytest
import torch

from saebench_sanity.config import TrainingConfig
from saebench_sanity.errors import DataError
from saebench_sanity.training.cohort import train_cells
from saebench_sanity.training.trainer import train_cell

MODES = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained")
TRAINING = TrainingConfig(max_steps=60, batch_size=32, lr=3e-3, curve_every=5, n_init_samples=256)


def members(reg, arch, seed=0):
    return [(reg.get("architecture", arch), reg.get("training_mode", m), dict(reg.get("training_mode", m).params), seed)
            for m in MODES]


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_each_member_follows_its_solo_cell(fake_registry, arch, monkeypatch):
    """relu members also run the matched-L0 controller (target 2): its scale follows the same
    curve on both paths, so it is compared too."""
    torch.set_num_threads(1)
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    kw = dict(d_sae=16, target_l0=2, arch_overrides={}, training=TRAINING)
    together = train_cells(members(fake_registry, arch), aset, **kw)
    monkeypatch.setattr("saebench_sanity.training.batched.batched_for", lambda sae: None)
    solo = train_cells(members(fake_registry, arch), aset, **kw)
    for mode, got, alone in zip(MODES, together, solo):
        assert got.steps == alone.steps and got.converged == alone.converged, mode
        if mode != "untrained":
            assert got.convergence["path"] == "batched" and alone.convergence["path"] == "solo"
        assert ("l0_control" in got.convergence) == (arch == "relu" and mode != "untrained")
        if "l0_control" in got.convergence:
            assert got.convergence["l0_control"]["scale"] == pytest.approx(alone.convergence["l0_control"]["scale"], rel=1e-4)
        for name, p in alone.sae.named_parameters():
            # float32: the batched program sums in another order than sae-lens (1e-4, as the engine's tests)
            torch.testing.assert_close(getattr(got.sae, name).detach(), p.detach(), rtol=1e-4, atol=1e-5, msg=name)
        assert [s for s, _ in got.loss_curve] == [s for s, _ in alone.loss_curve]


def test_train_cell_is_a_cohort_of_one(fake_registry):
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    kw = dict(d_sae=16, target_l0=2, arch_overrides={}, training=TRAINING)
    (arch_spec, mode_spec, params, seed) = members(fake_registry, "topk")[1]
    one = train_cell(arch_spec, mode_spec, aset, mode_params=params, seed=seed, **kw)
    cohort = train_cells(members(fake_registry, "topk"), aset, **kw)[1]
    assert one.steps == cohort.steps
    for name, p in one.sae.named_parameters():
        torch.testing.assert_close(getattr(cohort.sae, name).detach(), p.detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_a_member_that_cannot_build_fails_alone(fake_registry):
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    ms = members(fake_registry, "topk")
    ms[1] = (ms[1][0], ms[1][1], {"init": "nonsense"}, 0)  # frozen_decoder with a bad init
    out = train_cells(ms, aset, d_sae=16, target_l0=2, arch_overrides={}, training=TRAINING)
    assert isinstance(out[1], Exception) and "nonsense" in str(out[1])
    assert all(not isinstance(r, Exception) for i, r in enumerate(out) if i != 1)


def test_a_cohort_has_one_seed(fake_registry):
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    with pytest.raises(ValueError, match="one seed"):
        train_cells([*members(fake_registry, "topk", 0)[:1], *members(fake_registry, "topk", 1)[:1]], aset,
                    d_sae=16, target_l0=2, arch_overrides={}, training=TRAINING)


def test_a_diverging_member_is_a_data_error_naming_the_step(fake_registry):
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    hot = dataclasses.replace(TRAINING)
    object.__setattr__(hot, "lr", 1e6)  # past the config's bound on purpose: the engine's own guard is under test
    out = train_cells(members(fake_registry, "relu")[:2], aset, d_sae=16, target_l0=2, arch_overrides={}, training=hot)
    diverged = [r for r in out if isinstance(r, DataError)]
    assert diverged, out
    assert "diverged" in str(diverged[0]) and "at step" in str(diverged[0])


def test_batchtopk_members_serve_their_k_after_an_early_stop(fake_registry):
    """The inference threshold is the moving average's fixed point at the final weights (not the
    lagging average itself), for runs long enough that sae-lens would not call it stale."""
    import copy

    from saebench_sanity.architectures.batchtopk import calibrate_threshold

    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    training = dataclasses.replace(TRAINING, max_steps=500, early_stop=False)
    ms = [m for m in members(fake_registry, "batchtopk") if m[1].trains]
    out = train_cells(ms, aset, d_sae=16, target_l0=2, arch_overrides={}, training=training)
    sample = aset.sample_activations(training.n_init_samples, seed=0)
    for res in out:
        probe = copy.deepcopy(res.sae)
        want = calibrate_threshold(probe, sample, training.batch_size)
        assert float(res.sae.topk_threshold) == pytest.approx(want, rel=1e-6)
