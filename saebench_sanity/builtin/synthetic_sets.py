"""Built-in synthetic activation sets (ground truth known).

``synth-*`` are drawn by ``sae_lens.synthetic`` (``SyntheticModel``); ``study-*`` by the generator
of Korznikov et al. (2026), Finding 1 (``activations/study_synthetic.py``). ``*-mini`` are the
study's generator scaled down for the default suite (d_in 32, 1024 features, same firing
probabilities; see that module's docstring). ``training`` holds each set's recommended
``d_sae`` / ``target_l0`` and budget; a run config may override any of them.

Expected active features per sample (sum of firing probabilities): synth-easy 2.7,
synth-zipf 7.1, synth-corr-hier 4.3 (empirical, hierarchy gating), study-constant 20,
study-variable 20.2, study-constant-mini 6.4, study-variable-mini 6.6.

Budgets (measured with SAELens's TopK trainer, k = target_l0, constant lr, batch 1024, seed 0):
synth-easy at 2000 steps / lr 1e-3 recovers 94% of its features (EV 0.82, converged).
study-constant-mini is slow: lr 1e-3 gives EV 0.66 and 0.8% recovery after 4000 steps; lr 3e-3
gives EV 0.70 and recovery 20% / 27% / 37% / 41% after 4000 / 5300 / 8900 / 16000 steps, still
creeping up while EV has plateaued since ~2000 steps (the study's "lazy training"); the study
reports ~99.9% for TopK at paper size, which this budget does not reach at mini size. 16000 steps
at lr 3e-3 took ~30 min on one contended CPU core. The paper-size budgets and those of synth-zipf / synth-corr-hier are unmeasured
estimates.
"""

from saebench_sanity.activations.base import ActivationSetSpec

_SAE_LENS = "saebench_sanity.activations.synthetic:build_sae_lens_set"
_STUDY = "saebench_sanity.activations.synthetic:build_study_set"

#: The study's generator settings (Korznikov et al. 2026, its synthetic benchmark), shared by the paper-size and mini sets.
_STUDY_MAGNITUDE = {"magnitude_mu": 0.0, "magnitude_sigma": 0.25}
_STUDY_FIRING = {"constant": {"p_constant": 0.00625},
                 "variable": {"p_log10_min": -5.5, "p_log10_max": -1.2}}


def _study_params(name: str, regime: str, d_in: int, n_features: int) -> dict:
    return {"name": name, "regime": regime, "d_in": d_in, "n_features": n_features,
            **_STUDY_FIRING[regime], **_STUDY_MAGNITUDE, "seed": 0, "n_eval": 8192}


SETS = [
    ActivationSetSpec(
        name="synth-easy",
        description="sae_lens SyntheticModel: 48 near-orthogonal features in d_in 32, uniform firing p in [0.02, 0.1] (~2.7 active); easy",
        factory=_SAE_LENS,
        params={"name": "synth-easy", "d_in": 32, "n_features": 48,
                "firing": {"generator_name": "random", "min_prob": 0.02, "max_prob": 0.1},
                "mean_magnitude": 1.0, "std_magnitude": 0.1, "orthogonalize": True, "seed": 0, "n_eval": 8192},
        family="synthetic",
        d_in=32,
        training={"d_sae": 96, "target_l0": 3, "steps": 2000, "batch_size": 1024, "lr": 1e-3},
    ),
    ActivationSetSpec(
        name="synth-zipf",
        description="sae_lens SyntheticModel: 512 random features in d_in 32 (16x superposition), Zipfian firing (exponent 0.5, p 0.3..0.001, ~7.1 active)",
        factory=_SAE_LENS,
        params={"name": "synth-zipf", "d_in": 32, "n_features": 512,
                "firing": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.3, "min_prob": 0.001},
                "mean_magnitude": 1.0, "std_magnitude": 0.1, "seed": 0, "n_eval": 8192},
        family="synthetic",
        d_in=32,
        training={"d_sae": 512, "target_l0": 7, "steps": 4000, "batch_size": 1024, "lr": 1e-3},
    ),
    ActivationSetSpec(
        name="synth-corr-hier",
        description="sae_lens SyntheticModel: 256 features in d_in 32, Zipfian firing, low-rank correlated firings and a 16-root hierarchy (depth 2, branching 3, half mutually exclusive)",
        factory=_SAE_LENS,
        params={"name": "synth-corr-hier", "d_in": 32, "n_features": 256,
                "firing": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.25, "min_prob": 0.002},
                "mean_magnitude": 1.0, "std_magnitude": 0.1,
                "correlation": {"rank": 8, "correlation_scale": 0.1},
                "hierarchy": {"total_root_nodes": 16, "branching_factor": 3, "max_depth": 2,
                              "mutually_exclusive_portion": 0.5, "compensate_probabilities": True},
                "seed": 0, "n_eval": 8192},
        family="synthetic",
        d_in=32,
        training={"d_sae": 256, "target_l0": 4, "steps": 4000, "batch_size": 1024, "lr": 1e-3},
    ),
    ActivationSetSpec(
        name="study-constant",
        description="study generator, paper size: 3200 unit-sphere features in d_in 100, p = 0.00625 (20 active), LogNormal(0, 0.25) magnitudes",
        factory=_STUDY,
        params=_study_params("study-constant", "constant", d_in=100, n_features=3200),
        family="synthetic",
        d_in=100,
        training={"d_sae": 3200, "target_l0": 20, "steps": 30000, "batch_size": 4096, "lr": 3e-3},
    ),
    ActivationSetSpec(
        name="study-variable",
        description="study generator, paper size: 3200 unit-sphere features in d_in 100, p ~ LogUniform(10^-5.5, 10^-1.2) (~20 active)",
        factory=_STUDY,
        params=_study_params("study-variable", "variable", d_in=100, n_features=3200),
        family="synthetic",
        d_in=100,
        training={"d_sae": 3200, "target_l0": 20, "steps": 30000, "batch_size": 4096, "lr": 3e-3},
    ),
    ActivationSetSpec(
        name="study-constant-mini",
        description="study generator scaled 0.32x: 1024 features in d_in 32 (same 32x ratio, same p = 0.00625, 6.4 active)",
        factory=_STUDY,
        params=_study_params("study-constant-mini", "constant", d_in=32, n_features=1024),
        family="synthetic",
        d_in=32,
        training={"d_sae": 1024, "target_l0": 6, "steps": 16000, "batch_size": 1024, "lr": 3e-3},
    ),
    ActivationSetSpec(
        name="study-variable-mini",
        description="study generator scaled 0.32x: 1024 features in d_in 32, p ~ LogUniform(10^-5.5, 10^-1.2) (~6.6 active)",
        factory=_STUDY,
        params=_study_params("study-variable-mini", "variable", d_in=32, n_features=1024),
        family="synthetic",
        d_in=32,
        training={"d_sae": 1024, "target_l0": 6, "steps": 16000, "batch_size": 1024, "lr": 3e-3},
    ),
]
