"""Executors: what runs the cohorts of a plan (``base``: the contract; ``local``: this machine;
``ray_executor``: a Ray cluster; ``remote``: the task/reply protocol that keeps the driver the only
writer of the results store)."""
