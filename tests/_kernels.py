"""Another machine's CPU, emulated on this one: torch's and MKL's kernels capped at SSE4.2 (no AVX),
which changes the rounding of almost every vectorised float operation. Shared by the tests that
compare a computation under native and capped kernels (scripts/other-machine-verdicts.sh does the
same for whole runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: environment that caps torch (ATen) and MKL at SSE4.2; read at process start, so it needs a fresh process
CAPPED_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}


def native_and_capped(tmp_path: Path, code: str, *args: str, timeout: float = 600) -> tuple[Any, Any]:
    """Run ``code`` (a script that ``torch.save``s its result to ``sys.argv[1]``; ``args`` follow)
    in two fresh processes at once, one under native and one under capped kernels, each with its
    own ``SAEBENCH_CACHE``; return the two loaded results (native, capped). A failing process
    fails the calling test with the tail of its stderr."""
    import torch

    procs = {}
    for kind, extra in (("native", {}), ("capped", CAPPED_KERNELS)):
        env = {**os.environ, **extra, "SAEBENCH_CACHE": str(tmp_path / f"cache-{kind}")}
        with open(tmp_path / f"{kind}.err", "w") as err:  # a file, not a pipe: the two run at once
            procs[kind] = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"{kind}.pt"), *args],
                                           env=env, stdout=subprocess.DEVNULL, stderr=err)
    for kind, proc in procs.items():
        assert proc.wait(timeout=timeout) == 0, f"{kind}: {(tmp_path / f'{kind}.err').read_text()[-2000:]}"
    native, capped = (torch.load(tmp_path / f"{k}.pt") for k in ("native", "capped"))
    return native, capped
