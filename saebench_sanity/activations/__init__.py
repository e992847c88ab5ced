"""Activation sets: synthetic ground truth, harvested transformer activations, on-disk stores."""
