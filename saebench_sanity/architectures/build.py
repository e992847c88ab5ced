"""One builder over sae-lens's own architecture registry: ``SaeLensArchitecture("topk")`` is the
factory of an ``ArchitectureSpec`` for any architecture sae-lens can train
(``sae_lens.registry.get_sae_training_class``: ``standard``, ``topk``, ``batchtopk``, ``jumprelu``,
``gated``, ``matryoshka_batchtopk``, ``abstopk``, ... and any class a package registers there).

It validates hyper-parameters against the sae-lens config dataclass (unknown names, types,
``Literal`` choices, negative coefficients, ``k`` in ``1..d_sae``: one-line ``ConfigError``), then
constructs the sae-lens training SAE deterministically from a seed. Hand-written because sae-lens
has no "build from (d_in, d_sae, seed, **params)" entry point: its configs accept any field
silently-typed and its constructors draw from the global torch RNG.
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from saebench_sanity.errors import ConfigError, PluginError

#: Config fields a user may not set through architecture params (the suite owns them).
RESERVED = {
    "d_in": "set by the activation set",
    "d_sae": "set by run.expansion / run.d_sae",
    "dtype": "set by run.dtype / --dtype",
    "device": "set by run.device / --device",
    "metadata": "filled by the harness",
    "normalize_activations": "normalise activations in the activation set instead",
    "reshape_activations": "activation sets yield [batch, d_in] tensors",
    "matryoshka_widths": "use group_fractions",
}


#: the dtype ``make_config`` gives the sae-lens configs it builds (``init_dtype``)
_INIT_DTYPE: ContextVar[str] = ContextVar("saebench_init_dtype", default="float32")


@contextmanager
def init_dtype(dtype: str) -> Iterator[None]:
    """SAEs built inside this block (through ``make_config``: every built-in architecture) are
    constructed by sae-lens in ``dtype`` (``"float32"`` or ``"float64"``), so their initial
    weights are drawn and computed in it (``training.trainer.init_dtype_for`` says which a cell
    gets). A plugin that builds its config by other means keeps its own dtype."""
    token = _INIT_DTYPE.set(dtype)
    try:
        yield
    finally:
        _INIT_DTYPE.reset(token)


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool), finite: the number check of every numeric hyper-parameter
    here, of Matryoshka's group fractions and of a target L0 (``sparsity.check_target_l0``,
    ``RunConfig.target_l0_for``), before each checks its own range."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def known_params(cfg_cls: type, extra: tuple[str, ...] = ()) -> list[str]:
    """Hyper-parameter names an architecture accepts: its sae-lens config fields minus RESERVED."""
    names = [f.name for f in dataclasses.fields(cfg_cls) if f.name not in RESERVED]
    return sorted([*names, *extra])


def _check_type(arch: str, name: str, value: Any, default: Any, annotation: Any = "") -> None:
    where = f"architecture {arch!r}: parameter {name!r} = {value!r}"
    if typing.get_origin(annotation) is typing.Literal:  # e.g. jumprelu_sparsity_loss_mode
        allowed = typing.get_args(annotation)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{where}; use one of {', '.join(str(a) for a in allowed)}")
        return
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
        if not is_finite_number(value):
            raise ConfigError(f"{where} must be a finite number, e.g. {default}")
    elif default is None and value is not None:  # optional numbers (target_l0, pre_act_loss_coefficient)
        if not is_finite_number(value):
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
            return cfg_cls(d_in=d_in, d_sae=d_sae, dtype=_INIT_DTYPE.get(), device="cpu", **params)
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
    """ConfigError unless ``k`` (active latents per sample) is in ``1..d_sae`` (an integer if ``integer``)."""
    ok_type = isinstance(k, int) if integer else isinstance(k, (int, float))
    if isinstance(k, bool) or not ok_type or not (0 < k <= d_sae):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"architecture {arch!r}: k = {k!r} must be {kind} in 1..d_sae ({d_sae})")


def _k_is_integer(cfg_cls: type) -> bool:
    """Whether the config's ``k`` field is an ``int`` (TopK) rather than a ``float`` (BatchTopK: a mean)."""
    f = {f.name: f for f in dataclasses.fields(cfg_cls)}["k"]
    return f.type is int or f.type == "int"


@dataclass(frozen=True)
class SaeLensArchitecture:
    """Factory (``ArchitectureSpec.factory``) building sae-lens's training SAE for ``architecture``.

    ``SaeLensArchitecture("topk")(d_in=16, d_sae=64, seed=0, k=4)`` returns a ``TopKTrainingSAE``
    on CPU, in float32 (float64 inside ``init_dtype("float64")``), initialised from ``seed`` without
    touching the caller's RNG; ``params`` are any field of the sae-lens training config except
    ``RESERVED``. ``name`` is the registered architecture's name, used in error messages (defaults
    to ``architecture``).

    Subclass-free extension for architectures that need a parameter translated first (e.g.
    ``architectures.matryoshka``): ``config(d_in, d_sae, params)`` then ``construct(cfg, seed)``.
    """

    architecture: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.architecture

    def classes(self) -> tuple[type, type]:
        """``(training SAE class, training config class)`` from sae-lens's registry."""
        import sae_lens  # noqa: F401 - importing the package fills its registry
        from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY, get_sae_training_class

        try:
            return get_sae_training_class(self.architecture)
        except KeyError:
            raise PluginError(f"architecture {self.label!r}: sae-lens has no training class {self.architecture!r}; "
                              f"known: {', '.join(sorted(SAE_TRAINING_CLASS_REGISTRY))}") from None

    def config(self, d_in: int, d_sae: int, params: dict[str, Any], extra_known: tuple[str, ...] = ()) -> Any:
        """The validated sae-lens training config for ``(d_in, d_sae, **params)``."""
        return make_config(self.label, self.classes()[1], d_in, d_sae, params, extra_known)

    def construct(self, cfg: Any, seed: int) -> Any:
        """``cfg``'s SAE, initialised from ``seed`` (``k`` checked against ``d_sae`` where the config has one)."""
        sae_cls, cfg_cls = self.classes()
        if hasattr(cfg, "k"):
            check_k(self.label, cfg.k, cfg.d_sae, integer=_k_is_integer(cfg_cls))
        return build_seeded(self.label, cfg, sae_cls, seed)

    def __call__(self, d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
        return self.construct(self.config(d_in, d_sae, params), seed)
