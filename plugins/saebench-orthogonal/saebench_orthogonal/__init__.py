"""Example saebench-sanity plugin: ``synth-orthogonal`` set and ``reconstruction_cosine`` metric."""
