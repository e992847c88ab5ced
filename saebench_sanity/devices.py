"""Where and in what precision SAEs train: ``device`` and ``dtype`` options, checked at the edge.

``device``: ``"auto"`` (CUDA if available, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``,
``"cuda:N"`` or ``"mps"``. ``dtype``: ``"float32"`` (default), ``"float64"`` (exact comparisons,
CPU/CUDA only), ``"bfloat16"``. A device that is not there, or a dtype the device cannot do, is a
``ConfigError`` naming the option and what is available, before anything trains.

Identity: the training ``dtype`` is part of a cell's identity (float64 and bfloat16 training give
materially different SAEs); the ``device`` is not (the same recipe on CPU and on a GPU is the same
cell, equal within floating-point tolerance, not bit for bit). A result records both.
Hand-written because torch has no "pick the best available device" helper and sae-lens's
``SAETrainerConfig.device`` takes a resolved string.
"""

from __future__ import annotations

import os
import re
from typing import Any

from saebench_sanity.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("float32", "float64", "bfloat16")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(device: Any, option: str = "device") -> str:
    """The device string if it has a valid form (no torch import); ConfigError otherwise."""
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ConfigError(f"{option} = {device!r} is not a device; use one of {', '.join(DEVICE_CHOICES)}")
    return device


def check_dtype_name(dtype: Any, option: str = "dtype") -> str:
    """The dtype string if known (no torch import); ConfigError otherwise."""
    if dtype not in DTYPES:
        raise ConfigError(f"{option} = {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return str(dtype)


def available_devices() -> list[str]:
    """Devices torch can use on this machine, best first (``cuda:N`` for each GPU, ``mps``, ``cpu``)."""
    import torch

    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(device: str = "auto", option: str = "device") -> str:
    """``"auto"`` -> the best available device; an explicit device -> itself if it exists.

    Returns a string torch and sae-lens accept (``"cpu"``, ``"cuda:0"``, ``"mps"``)."""
    check_device_name(device, option)
    have = available_devices()
    if device == "auto":
        return have[0]
    if device == "cpu":
        return "cpu"
    wanted = "cuda:0" if device == "cuda" else device
    if wanted not in have:
        raise ConfigError(f"{option} = {device!r} is not available on this machine; available: {', '.join(have)}"
                          + (" (auto picks the first)" if len(have) > 1 else ""))
    return wanted


def resolve_dtype(dtype: str, device: str, option: str = "dtype") -> Any:
    """The torch dtype for ``dtype`` on a resolved ``device``; ConfigError if the device cannot do it
    (MPS has no float64)."""
    import torch

    check_dtype_name(dtype, option)
    if dtype == "float64" and device.startswith("mps"):
        raise ConfigError(f"{option} = 'float64' is not supported on {device}; use float32 or bfloat16 there")
    if dtype == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{option} = 'bfloat16' is not supported by {device}; use float32")
    return getattr(torch, dtype)


def module_device(obj: Any) -> Any:
    """The torch device an SAE or model lives on: its first parameter's (also through the wrappers
    metrics put around SAEs, which keep the wrapped one as ``.sae``); CPU when it has none."""
    import torch

    seen = 0
    while obj is not None and seen < 8:  # wrappers of wrappers, bounded
        params = getattr(obj, "parameters", None)
        if callable(params):
            first = next(iter(params()), None)
            if first is not None:
                return first.device
        w = getattr(obj, "W_dec", None)
        if isinstance(w, torch.Tensor):
            return w.device
        obj, seen = getattr(obj, "__dict__", {}).get("sae"), seen + 1
    return torch.device("cpu")


_ON_DEVICE: dict[tuple[int, str], tuple[Any, Any]] = {}


def model_on(model: Any, device: Any) -> Any:
    """``model`` on ``device``: the model itself when it is already there (so CPU scoring runs on
    the very object it ran on before), else a copy moved there, made once per process per
    (model, device) and shared by every metric and the local judge. The original stays where it
    was: training data, harvest and other processes may read it."""
    import copy

    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if module_device(model) == device:
        return model
    key = (id(model), str(device))
    if key not in _ON_DEVICE:  # the original is kept in the value, so its id cannot be reused
        _ON_DEVICE[key] = (model, copy.deepcopy(model).to(device))
    return _ON_DEVICE[key][1]


#: Environment settings that change how torch's and MKL's CPU kernels round (docs/limitations.md:
#: ATEN_CPU_CAPABILITY caps torch's vector code, MKL_CBWR pins MKL's code branch,
#: MKL_ENABLE_INSTRUCTIONS caps MKL's instruction set).
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def cpu_kernels() -> dict[str, str]:
    """Which CPU kernels this process computes with: the processor, torch's vector capability and
    the kernel settings of the environment that are set. Two CPU results of one cell agree to the
    last bit only when these (and the thread count) agree; a result records them so that a
    difference in the last digits can be traced to its machine. torch does not report MKL's
    branch, so the environment variable is what there is to record."""
    import platform

    import torch

    return {"cpu": _cpu_model() or platform.machine(), "aten": torch.backends.cpu.get_cpu_capability(),
            **{k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}


def _cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else ''."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return ""
