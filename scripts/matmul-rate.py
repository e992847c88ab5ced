"""The CPU's matrix-product rate (GFLOP/s, one thread, best of 10) at the sizes the suite trains at.

    python scripts/matmul-rate.py            # under this process's environment
    MKL_CBWR=COMPATIBLE python scripts/matmul-rate.py

Run it once plainly and once under the settings to compare (MKL reads MKL_CBWR when it loads, so
each setting needs its own process). Used in docs/limitations.md for what pinning MKL's code
branch costs: the products are a real-set SAE step's (batch 256, d_in 576, d_sae 1152) and a
large SAE's (batch 1024, d_in 768, d_sae 16384). Writes nothing.
"""

from __future__ import annotations

import os
import time

import torch

SHAPES = ((256, 576, 1152), (1024, 768, 16384))


def rate(m: int, k: int, n: int, dtype: torch.dtype, rounds: int = 10) -> float:
    """GFLOP/s of the best of ``rounds`` products of an m x k and a k x n matrix."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    torch.set_num_threads(1)
    pinned = {k: os.environ[k] for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    print(f"environment: {pinned or 'native'}; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    for dtype in (torch.float32, torch.float64):
        for m, k, n in SHAPES:
            print(f"{str(dtype).removeprefix('torch.'):<8} {m:>5} x {k:>4} @ {k:>4} x {n:>5}: {rate(m, k, n, dtype):6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
