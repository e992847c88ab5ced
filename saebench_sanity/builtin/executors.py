"""Built-in executors. Factories are "module:attr" references: listing them imports neither the
process pool nor Ray."""

from saebench_sanity.executors.base import ExecutorSpec
from saebench_sanity.hookspecs import hookimpl

EXECUTORS = [
    ExecutorSpec(
        name="local",
        description="this machine: cohorts in this process (--jobs 1) or in a pool of --jobs processes "
                    "(default: one per core, at most one per cohort with work)",
        factory="saebench_sanity.executors.local:build",
        options=("jobs",),
    ),
    ExecutorSpec(
        name="ray",
        description="a Ray cluster: each cohort is a Ray task (1 CPU, 1 GPU when training on CUDA), retried on "
                    "worker loss; --address host:port or auto joins a cluster, none starts a local instance",
        factory="saebench_sanity.executors.ray_executor:build",
        options=("jobs", "address"),
        install='pip install "saebench-sanity[ray]"',
    ),
]


@hookimpl
def saebench_register_executors(register):
    for spec in EXECUTORS:
        register(spec)
