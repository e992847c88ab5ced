"""Shared builder behind every built-in architecture module: validate hyper-parameters against the
sae-lens config dataclass, then construct the sae-lens training SAE deterministically from a seed.

Hand-written because sae-lens has no "build from (d_in, d_sae, seed, **params)" entry point: its
configs accept any field silently-typed and its constructors draw from the global torch RNG.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from saebench_sanity.errors import ConfigError

#: Config fields a user may not set through architecture params (the suite owns them).
RESERVED = {
    "d_in": "set by the activation set",
    "d_sae": "set by run.expansion / run.d_sae",
    "dtype": "SAEs are trained in float32",
    "device": "SAEs are trained on CPU",
    "metadata": "filled by the harness",
    "normalize_activations": "normalise activations in the activation set instead",
    "reshape_activations": "activation sets yield [batch, d_in] tensors",
    "matryoshka_widths": "use group_fractions",
}


def known_params(cfg_cls: type, extra: tuple[str, ...] = ()) -> list[str]:
    """Hyper-parameter names an architecture accepts: its sae-lens config fields minus RESERVED."""
    names = [f.name for f in dataclasses.fields(cfg_cls) if f.name not in RESERVED]
    return sorted([*names, *extra])


def _check_type(arch: str, name: str, value: Any, default: Any, annotation: Any = "") -> None:
    where = f"architecture {arch!r}: parameter {name!r} = {value!r}"
    ann = str(annotation)
    if "float" in ann and "None" not in ann and "bool" not in ann:  # e.g. BatchTopK k: float = 100
        default = float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else 0.0
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
    elif isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, e.g. {default}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, e.g. {default}")
    elif default is None and value is not None:  # optional numbers (target_l0, pre_act_loss_coefficient)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number or omitted")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, e.g. {default!r}")


def make_config(arch: str, cfg_cls: type, d_in: int, d_sae: int, params: dict[str, Any],
                extra_known: tuple[str, ...] = ()) -> Any:
    """Validated sae-lens training config for ``(d_in, d_sae, **params)``; ConfigError otherwise."""
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"architecture {arch!r}: {name} = {value!r} must be a positive integer")
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    known = known_params(cfg_cls, extra_known)
    for name, value in params.items():
        if name in RESERVED:
            raise ConfigError(f"architecture {arch!r}: parameter {name!r} cannot be set here ({RESERVED[name]})")
        if name not in fields:
            raise ConfigError(f"architecture {arch!r}: unknown parameter {name!r}; known: {', '.join(known)}")
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        _check_type(arch, name, value, default, f.type)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name.endswith(("coefficient", "lr")) and value < 0:
            raise ConfigError(f"architecture {arch!r}: parameter {name!r} = {value!r} must be >= 0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cfg_cls(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"architecture {arch!r}: invalid parameters ({exc})") from None


def build_seeded(arch: str, cfg: Any, sae_cls: type, seed: int) -> Any:
    """Construct ``sae_cls(cfg)`` deterministically from ``seed`` without disturbing the caller's RNG."""
    import torch

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"architecture {arch!r}: seed = {seed!r} must be a non-negative integer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sae = sae_cls(cfg)
        except ValueError as exc:
            raise ConfigError(f"architecture {arch!r}: invalid parameters ({exc})") from None
    return sae


def check_k(arch: str, k: Any, d_sae: int, integer: bool) -> None:
    ok_type = isinstance(k, int) if integer else isinstance(k, (int, float))
    if isinstance(k, bool) or not ok_type or not (0 < k <= d_sae):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"architecture {arch!r}: k = {k!r} must be {kind} in 1..d_sae ({d_sae})")
