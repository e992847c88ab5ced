"""SAE architectures: the contract (``base.ArchitectureSpec``), one builder over sae-lens's own
architecture registry (``build.SaeLensArchitecture``), the target-L0 mapping (``sparsity``), and
the modules that add behaviour sae-lens lacks (``matryoshka``: group fractions;
``batchtopk``: threshold calibration; ``checkpoint``: saving and loading)."""
