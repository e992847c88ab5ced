"""Example saebench-sanity plugin: the data_directions baseline."""
