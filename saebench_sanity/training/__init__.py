"""Training: one trainer loop for every mode, and the modes (the study's random baselines)."""
