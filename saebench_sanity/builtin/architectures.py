"""Built-in architectures: thin wrappers over sae-lens training SAE classes."""

from saebench_sanity.architectures.base import ArchitectureSpec
from saebench_sanity.hookspecs import hookimpl

_PLAIN_ROLES = {"W_enc": "encoder", "W_dec": "decoder", "b_enc": "encoder_bias", "b_dec": "decoder_bias"}

ARCHITECTURES = [
    ArchitectureSpec(
        name="relu",
        description="ReLU SAE with L1 penalty (sae-lens StandardTrainingSAE)",
        factory="saebench_sanity.architectures.relu:build",
        params={"l1_coefficient": 5.0},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="l1_coefficient",
        sae_lens_architecture="standard",
    ),
    ArchitectureSpec(
        name="topk",
        description="TopK SAE (sae-lens TopKTrainingSAE)",
        factory="saebench_sanity.architectures.topk:build",
        params={"k": 20},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="topk",
    ),
    ArchitectureSpec(
        name="batchtopk",
        description="BatchTopK SAE (sae-lens BatchTopKTrainingSAE; inference uses the learned threshold)",
        factory="saebench_sanity.architectures.batchtopk:build",
        params={"k": 20},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="batchtopk",
    ),
    ArchitectureSpec(
        name="jumprelu",
        description="JumpReLU SAE with L0 penalty and learned thresholds (sae-lens JumpReLUTrainingSAE)",
        factory="saebench_sanity.architectures.jumprelu:build",
        params={"l0_coefficient": 1.0},
        roles={**_PLAIN_ROLES, "threshold": "threshold"},
        sparsity_param="l0_coefficient",
        sae_lens_architecture="jumprelu",
    ),
    ArchitectureSpec(
        name="gated",
        description="Gated SAE (sae-lens GatedTrainingSAE)",
        factory="saebench_sanity.architectures.gated:build",
        params={"l1_coefficient": 5.0},
        roles={"W_enc": "encoder", "W_dec": "decoder", "b_gate": "encoder_bias", "b_mag": "encoder_bias",
               "r_mag": "scale", "b_dec": "decoder_bias"},
        sparsity_param="l1_coefficient",
        sae_lens_architecture="gated",
    ),
    ArchitectureSpec(
        name="matryoshka",
        description="Matryoshka BatchTopK SAE, group fractions 0.5/0.3/0.2 (sae-lens MatryoshkaBatchTopKTrainingSAE)",
        factory="saebench_sanity.architectures.matryoshka:build",
        params={"k": 20, "group_fractions": [0.5, 0.3, 0.2]},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="matryoshka_batchtopk",
    ),
]


@hookimpl
def saebench_register_architectures(register):
    for spec in ARCHITECTURES:
        register(spec)
