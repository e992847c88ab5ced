"""Activation sets harvested from a real language model (``family="real"``).

``RealActivationSet`` is an ``ActivationSet`` over an on-disk store (``store``/``reader``). The
store lives in ``$SAEBENCH_CACHE/activations/<name>/`` and is built on first use if missing (the
default model and corpus need no network), so a registered name works from a clean checkout.
It provides ``NEED_MODEL``: ``resource("model")`` returns a ``ModelHandle`` with the model, its
tokenizer, the hook point, the held-out token contexts (never used for training) and the
normalizer to undo before splicing reconstructions back in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from saebench_sanity.activations.base import NEED_MODEL, ActivationSet
from saebench_sanity.activations.reader import Normalizer, StoreReader
from saebench_sanity.activations.store import (StoreConfig, build_store, content_hash_of, identity_hash, is_complete,
                                               model_identity, store_dir)
from saebench_sanity.errors import DataError, SaebenchError

_MODELS: dict[tuple, tuple[Any, Any, dict[str, Any]]] = {}


def store_root() -> Path:
    """``$SAEBENCH_CACHE/activations`` (default ``~/.cache/saebench-sanity/activations``)."""
    from saebench_sanity.models.default_model import cache_root

    return cache_root() / "activations"


def load_model_cached(model: str, revision: str | None = None, gguf_file: str | None = None,
                      console: Any = None, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, info)``, loaded once per process per model reference; ``tokenizer``:
    the model's tokenizer if the caller already loaded it (not loaded again)."""
    key = (model, revision, gguf_file)
    if key not in _MODELS:
        if model == "default":
            from saebench_sanity.models.default_model import default_model

            _MODELS[key] = default_model(console)
        else:
            from saebench_sanity.models.loading import load_causal_lm

            _MODELS[key] = load_causal_lm(model, revision=revision, gguf_file=gguf_file, tokenizer=tokenizer)
    return _MODELS[key]


@dataclass
class ModelHandle:
    """What model-based metrics need.

    Attributes:
        model: the transformers causal LM (eval mode).
        tokenizer: its tokenizer.
        hook_point: where the set's activations come from (``resid_post.12``...).
        eval_contexts: held-out token contexts ``[n_ctx, context_len]`` int64.
        excluded_token_ids: special-token ids whose positions are not SAE data (kept clean when splicing).
        normalizer: the set's normalization (``undo`` before splicing SAE outputs into the model).
        mean_activation: mean activation ``[d_in]`` float32 in the model's (un-normalized) space
            over the training split's stored rows (special-token positions excluded), the
            reference of mean ablation; None if the set does not provide one.
        info: ``load_causal_lm``'s info of the loaded model (``id``, ``sha256`` / ``revision``...):
            what names the weights for caches kept on disk across processes (the probing
            texts' activations, ``metrics.probing.token_activations``).
    """

    model: Any
    tokenizer: Any
    hook_point: str
    eval_contexts: Any
    excluded_token_ids: list[int]
    normalizer: Normalizer
    mean_activation: Any = None
    info: dict[str, Any] | None = None


def set_scale(activation_set: Any) -> float:
    """The factor the set multiplies raw model activations by before serving them (its
    ``Normalizer.scale``; 1.0 for sets that serve activations as they are, e.g. synthetic ones)."""
    return float(getattr(getattr(activation_set, "normalizer", None), "scale", 1.0))


def checkpoint_metadata(activation_set: Any, set_name: str) -> dict[str, Any]:
    """What a checkpoint trained on ``activation_set`` records in its SAELens ``cfg.metadata``
    (``architectures.checkpoint.save_checkpoint``): the set's name (``SET_METADATA_KEY``, which
    ``saebench check`` reads when no --set is given) and, for a stored real set, the SAELens fields
    that say where the SAE reads: ``model_name`` (the model as this suite loads it: ``"default"``
    for the embedded SmolLM2-135M-Instruct, else a hub id or folder), ``hook_name`` (TransformerLens
    form), ``context_size``, ``prepend_bos`` and ``dataset_path`` (the corpus)."""
    from saebench_sanity.architectures.checkpoint import SET_METADATA_KEY
    from saebench_sanity.models.hook_points import transformer_lens_name

    meta: dict[str, Any] = {SET_METADATA_KEY: set_name}
    if isinstance(activation_set, RealActivationSet):
        cfg = activation_set.config
        meta.update(model_name=cfg.model, hook_name=transformer_lens_name(cfg.hook_point),
                    context_size=int(cfg.context_len), prepend_bos=bool(cfg.prepend_bos), dataset_path=cfg.corpus)
    return meta


class SetSpaceSAE:
    """An SAE seen from a set's serving space: ``encode(x) = sae.encode(x * ratio)``,
    ``decode(z) = sae.decode(z) / ratio``, with ``ratio`` = (the SAE's input scale) / (the set's
    scale). So the SAE itself always receives activations in the space it was trained in (raw
    model activations times its own recorded factor), whatever the set serves, and metrics keep
    one convention: every score is computed on the set's served activations (``[n, d_in]``), so
    scale-dependent scores (MSE) are in the set's units for a user's SAE and its baselines alike.

    A wrapper rather than re-folding weights because it is exact for every architecture, also
    those whose latents depend on the weight scale (TopK with ``rescale_acts_by_decoder_norm``)
    or that normalize at run time (``constant_norm_rescale``, ``layer_norm``). Every other
    attribute (``cfg``, ``W_dec``, ``eval``...) is the wrapped SAE's own.
    """

    def __init__(self, sae: Any, ratio: float) -> None:
        self.sae = sae
        self.ratio = float(ratio)

    def encode(self, x: Any) -> Any:
        """``[n, d_in]`` in the set's space -> latents ``[n, d_sae]`` of the wrapped SAE."""
        return self.sae.encode(x * self.ratio)

    def decode(self, z: Any) -> Any:
        """Latents ``[n, d_sae]`` -> reconstruction ``[n, d_in]`` in the set's space."""
        return self.sae.decode(z) / self.ratio

    def forward(self, x: Any) -> Any:
        return self.decode(self.encode(x))

    __call__ = forward

    def __getattr__(self, name: str) -> Any:
        if name == "sae":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.sae, name)


def sae_in_set_space(sae: Any, activation_set: Any, sae_input_scale: float = 1.0) -> Any:
    """``sae`` as metrics on ``activation_set`` must see it (see ``SetSpaceSAE``).

    ``sae_input_scale``: what the SAE expects, as a multiple of raw model activations (1.0 for an
    SAE that takes raw activations: cfg ``normalize_activations = "none"``, any SAE this suite
    saves). Returns ``sae`` itself when the two spaces agree."""
    ratio = float(sae_input_scale) / set_scale(activation_set)
    return sae if ratio == 1.0 else SetSpaceSAE(sae, ratio)


def checkpoint_in_set_space(sae: Any, activation_set: Any) -> Any:
    """A checkpoint this suite saved for a cell of ``activation_set``, in the set's space. One
    marked ``architectures.checkpoint.FOLDED_SCALE_KEY`` takes raw activations; one without the
    mark was saved unfolded (before folding existed, or for a set of scale 1) and is already in
    the set's space (the cached checkpoints of earlier runs keep scoring as they did)."""
    from saebench_sanity.architectures.checkpoint import FOLDED_SCALE_KEY

    meta = getattr(sae.cfg, "metadata", None)
    folded = meta.get(FOLDED_SCALE_KEY) if meta is not None else None
    if folded is None:
        return sae
    return sae_in_set_space(sae, activation_set, 1.0)


def check_sae_d_in(sae_d_in: int, activation_set: Any) -> None:
    """DataError if an SAE's input width differs from the set's ``d_in``."""
    if int(sae_d_in) != int(activation_set.d_in):
        raise DataError(f"SAE d_in {sae_d_in} differs from activation set {activation_set.name!r} d_in {activation_set.d_in}; "
                        f"use an SAE with d_in={activation_set.d_in} or a set of width {sae_d_in}")


class RealActivationSet(ActivationSet):
    """Activations of a language model at one hook point over a corpus (see module doc).

    Args:
        name: the set's registered name (also its store folder name).
        normalize: serve training/eval batches scaled so E||x||^2 = d_in (SAELens
            ``expected_average_only_in``); the factor is in the store manifest.
        buffer_rows: shuffle-buffer size of the training stream (bounds memory).
        exclude_massive: leave the rows flagged massive at harvest out of the training stream
            (the store must be built with ``massive_norm_ratio``); eval activations keep them
            (``reconstruction_bulk`` reads the flags instead).
        d_in: expected width (checked against the built store), or None.
        root: store root folder (default ``store_root()``).
        model_bundle: an already loaded ``(model, tokenizer, info)`` (tests).
        **store_params: ``StoreConfig`` fields (model, hook_point, corpus, context_len, ...).
    """

    def __init__(self, name: str, *, normalize: bool = True, buffer_rows: int = 65536, d_in: int | None = None,
                 root: str | Path | None = None, model_bundle: Any = None, exclude_massive: bool = False,
                 **store_params: Any) -> None:
        self.name = name
        self.normalize = bool(normalize)
        self.exclude_massive = bool(exclude_massive)
        self.buffer_rows = int(buffer_rows)
        self._expected_d_in = d_in
        self.config = StoreConfig(**store_params)
        self.path = store_dir(root if root is not None else store_root(), name)
        self._bundle = model_bundle

    # -- store -----------------------------------------------------------------------------
    def build(self, console: Any = None, progress: bool = True, device: str = "cpu") -> Path:
        """Build the store if it is not complete (resumes a partial build).

        ``device``: where the model's forward passes run while harvesting (``"cuda:0"``...); not
        part of the set's identity. The model goes back to the CPU afterwards (metrics use it there)."""
        if not is_complete(self.path):
            try:
                self._build(console, progress, device)
            except SaebenchError:
                self._forget_unstarted_declaration()
                raise
        return self.path

    def _build(self, console: Any, progress: bool, device: str) -> None:
        # build_store opens the corpus before anything of the model loads and tokenizes it
        # before the weights load (``store._build_store``)
        cfg = self.config
        moved: list[Any] = []

        def load(tokenizer: Any) -> tuple[Any, Any, dict[str, Any]]:
            bundle = self._bundle or load_model_cached(cfg.model, cfg.model_revision, cfg.gguf_file, console,
                                                       tokenizer=tokenizer)
            if device != "cpu":
                bundle[0].to(device)
                moved.append(bundle[0])
            return bundle

        try:
            build_store(self.name, cfg, self.path.parent, console=console, progress=progress,
                        model_bundle=self._bundle, load_model=load)
        finally:
            for model in moved:
                model.to("cpu")

    def _forget_unstarted_declaration(self) -> None:
        """After bad input (a corpus, hook point or model the build refused before it wrote its
        plan), remove a user set's declaration when it is all its folder holds: its name was not
        bound yet (``declare_user_set``), and `activations list` would show it as a partial set."""
        folder = self.path
        try:
            if folder.is_dir() and [p.name for p in folder.iterdir()] == [USER_SET_FILE]:
                (folder / USER_SET_FILE).unlink()
                folder.rmdir()
        except OSError:  # another process declared or started it meanwhile: leave the folder to it
            pass

    @cached_property
    def reader(self) -> StoreReader:
        if not is_complete(self.path):
            import logging

            log = logging.getLogger(__name__)
            log.warning("building activation set %s (first use) -> %s", self.name, self.path)
            console = None
            if log.isEnabledFor(logging.WARNING):  # the build's progress bar, unless the CLI runs --quiet
                from rich.console import Console

                console = Console(stderr=True)
            self.build(console, progress=console is not None)
        reader = StoreReader(self.path)
        if self._expected_d_in is not None and reader.d_in != self._expected_d_in:
            raise DataError(f"activation store {str(self.path)!r} has d_in {reader.d_in}, set {self.name!r} declares "
                            f"{self._expected_d_in}; run `saebench activations rm {self.name}` and build again")
        return reader

    @property
    def d_in(self) -> int:  # type: ignore[override]
        if self._expected_d_in is not None and "reader" not in self.__dict__:
            return int(self._expected_d_in)
        return self.reader.d_in

    @property
    def normalizer(self) -> Normalizer:
        return self.reader.normalizer if self.normalize else Normalizer()

    # -- ActivationSet -----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The set's recipe (its hash keys every cell): the store's identity hash (model and
        weights, hook point, corpus and token ids, sizes, dtype; ``store.identity``) plus how it
        is served. No float computed from the activations (the normalization factor differs in
        its last bits between machines; it is in the store's fingerprint instead)."""
        m = self.reader.manifest
        return {"kind": "real", "name": self.name, "store_identity_sha256": identity_hash(self.path),
                "model": m["model"], "hook_point": m["hook_point"], "d_in": m["d_in"],
                "corpus": m["corpus"], "n_train_tokens": m["n_train_tokens"], "n_eval_tokens": m["n_eval_tokens"],
                "normalize": self.normalize, "normalization": m["normalization"]["method"],
                "buffer_rows": self.buffer_rows,
                # only when on, so the keys of every set that serves all rows stay as they were
                **({"exclude_massive": True} if self.exclude_massive else {})}

    @property
    def stored_content_sha256(self) -> str | None:
        """``content_sha256`` when the store is built, else None (never starts a build)."""
        return self.content_sha256 if "reader" in self.__dict__ or is_complete(self.path) else None

    @property
    def content_sha256(self) -> str:
        """The bytes this set serves (``store.content_hash``): recorded with every result as
        ``data_sha256``; another machine's build of the same recipe differs here only."""
        return content_hash_of(self.reader.manifest)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Any]:
        return self.reader.iter_batches(batch_size, seed, buffer_rows=self.buffer_rows, normalize=self.normalize,
                                        exclude_massive=self.exclude_massive)

    @property
    def massive_norm_ratio(self) -> float | None:
        """The ratio of the massive-activation rule the store was harvested with (None: no flags)."""
        return self.reader.massive_norm_ratio

    def eval_massive(self) -> Any:
        """Harvest-time massive-activation flags of ``eval_activations()``' rows ``[n_eval]`` bool,
        or None (``StoreReader.eval_massive``)."""
        return self.reader.eval_massive()

    def eval_activations(self) -> Any:
        return self.reader.eval_activations(normalize=self.normalize)

    def sample_activations(self, n: int, seed: int = 0) -> Any:
        """The base class's sample, kept per ``(n, seed)``: drawing it fills the shuffle buffer
        from the whole store (~1.2 s for the default sets), and every cell of a seed asks for the
        same rows (30 cells per seed in the default suite). A copy is returned, so a mode that
        edits its sample in place cannot change the next cell's. ``[n, d_in]``."""
        cache = self.__dict__.setdefault("_samples", {})
        if (n, seed) not in cache:
            cache[(n, seed)] = super().sample_activations(n, seed)
        return cache[(n, seed)].clone()

    @property
    def provides(self) -> frozenset[str]:
        return frozenset({NEED_MODEL})

    def resource(self, need: str) -> Any:
        if need != NEED_MODEL:
            raise KeyError(need)
        reader = self.reader
        cfg = self.config
        model, tokenizer, info = self._bundle or load_model_cached(cfg.model, cfg.model_revision, cfg.gguf_file)
        built, now = reader.manifest["model"], model_identity(info)
        if (built.get("sha256"), built.get("revision")) != (now.get("sha256"), now.get("revision")):
            raise DataError(f"activation set {self.name!r} was built from different weights of {built.get('id')!r} than the "
                            f"ones installed now; run `saebench activations rm {self.name}` and build again")
        import torch

        return ModelHandle(model=model, tokenizer=tokenizer, hook_point=reader.manifest["hook_point"],
                           eval_contexts=reader.eval_contexts(),
                           excluded_token_ids=list(reader.manifest["tokens"]["excluded_token_ids"]),
                           normalizer=self.normalizer,
                           mean_activation=torch.tensor(reader.manifest["fingerprint"]["train"]["mean"], dtype=torch.float32),
                           info=info)


def build_real_set(**params: Any) -> RealActivationSet:
    """Factory used by ``ActivationSetSpec`` (``"saebench_sanity.activations.real:build_real_set"``)."""
    return RealActivationSet(**params)


# -- user-defined real sets (no plugin: a [sets.NAME] table or `saebench activations build --model`) --

#: the recipe file of a user-defined set, written in its store folder before anything is built:
#: it binds the name to its parameters (``declare_user_set``) and lets every process (pool
#: workers, ``saebench check``) find the set by name (``user_set_specs``)
USER_SET_FILE = "user-set.json"
#: stored activation dtypes a user set may choose (``StoreConfig`` stores them; readers serve float32)
USER_SET_DTYPES = ("float32", "float16", "bfloat16")
#: default massive-activation rule of a user set: flag rows whose norm exceeds 10x the held-out
#: rows' median norm; the ``reconstruction_bulk`` metric's default ``max_norm_ratio``, so its
#: scores read the stored flags (see docs/real-activations.md for the measured outliers)
MASSIVE_NORM_RATIO = 10.0


def _recorded_recipe(record: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a ``user-set.json`` as it was meant when written: a set declared before
    massive-activation flags existed (its params lack ``massive_norm_ratio``) has none."""
    recipe = dict(record.get("recipe") or {})
    if "massive_norm_ratio" not in (record.get("params") or {}):
        recipe.setdefault("massive_norm_ratio", None)
    return recipe


def user_set_params(name: str, *, model: str, hook_point: str, corpus: str = "default", context_len: int = 128,
                    n_train_tokens: int = 65_024, n_eval_tokens: int = 8_128, dtype: str = "float32",
                    prepend_bos: bool = True, model_revision: str | None = None,
                    corpus_kwargs: dict[str, Any] | None = None, batch_size: int = 16,
                    contexts_per_shard: int = 64, massive_norm_ratio: float | None = MASSIVE_NORM_RATIO,
                    exclude_massive: bool = False) -> dict[str, Any]:
    """``RealActivationSet`` parameters of a user-defined set (see docs/real-activations.md).

    ``massive_norm_ratio``: rows whose norm exceeds it times the held-out rows' median norm are
    flagged at harvest (``store`` module doc; None: no flags); ``exclude_massive`` leaves them
    out of training.

    Token counts become context counts: a context of ``context_len`` tokens gives ``context_len
    - 1`` harvested positions with BOS prepended (``context_len`` without), so ``n_train_tokens``
    asks for ``ceil(n_train_tokens / that)`` training contexts; the set then holds that many
    positions minus the document separators (special tokens are never harvested).
    ConfigError for a value out of range."""
    from saebench_sanity.errors import ConfigError

    for key, value in (("model", model), ("hook_point", hook_point), ("corpus", corpus)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"activation set {name!r}: {key} = {value!r} must be a non-empty string")
    from saebench_sanity.models.hook_points import parse_hook_point

    parse_hook_point(hook_point)  # its form, before any model loads (whether the model has the layer: at build)
    for key, number, lo in (("context_len", context_len, 2), ("n_train_tokens", n_train_tokens, 1),
                            ("n_eval_tokens", n_eval_tokens, 1), ("batch_size", batch_size, 1),
                            ("contexts_per_shard", contexts_per_shard, 1)):
        if isinstance(number, bool) or not isinstance(number, int) or number < lo:
            raise ConfigError(f"activation set {name!r}: {key} = {number!r} must be an integer >= {lo}")
    if dtype not in USER_SET_DTYPES:
        raise ConfigError(f"activation set {name!r}: dtype = {dtype!r} must be one of {', '.join(USER_SET_DTYPES)}")
    if not isinstance(prepend_bos, bool):
        raise ConfigError(f"activation set {name!r}: prepend_bos = {prepend_bos!r} must be true or false")
    r = massive_norm_ratio
    if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 1 or r == float("inf")):
        raise ConfigError(f"activation set {name!r}: massive_norm_ratio = {r!r} must be a number > 1 (a multiple of "
                          "the median norm)")
    if not isinstance(exclude_massive, bool):
        raise ConfigError(f"activation set {name!r}: exclude_massive = {exclude_massive!r} must be true or false")
    if exclude_massive and r is None:
        raise ConfigError(f"activation set {name!r}: exclude_massive needs massive_norm_ratio (the rule that flags them)")
    per_context = context_len - 1 if prepend_bos else context_len
    return {"name": name, "model": model, "model_revision": model_revision, "hook_point": hook_point,
            "corpus": corpus, "corpus_kwargs": dict(corpus_kwargs or {}), "context_len": context_len,
            "n_train_contexts": -(-n_train_tokens // per_context), "n_eval_contexts": -(-n_eval_tokens // per_context),
            "contexts_per_shard": contexts_per_shard, "dtype": dtype, "prepend_bos": prepend_bos,
            "batch_size": batch_size, "normalize": True,
            **({} if r is None else {"massive_norm_ratio": float(r)}),
            **({"exclude_massive": True} if exclude_massive else {})}


def _user_spec(name: str, params: dict[str, Any], recipe: dict[str, Any]) -> Any:
    from saebench_sanity.activations.base import ActivationSetSpec

    return ActivationSetSpec(
        name=name, family="real", factory="saebench_sanity.activations.real:build_real_set", params=dict(params),
        description=f"user-defined: {recipe['model']} {recipe['hook_point']} over corpus {recipe['corpus']!r}, "
                    f"{recipe['n_train_tokens']:,} train + {recipe['n_eval_tokens']:,} eval tokens ({USER_SET_FILE})")


def declare_user_set(name: str, recipe: dict[str, Any], root: str | Path | None = None,
                     registry: Any = None) -> Any:
    """Bind ``name`` to ``recipe`` (the keyword arguments of ``user_set_params``) and return its
    ``ActivationSetSpec``. The first declaration writes ``<root>/<name>/user-set.json``; a later
    one with other parameters is refused (DataError, one line): a set's name always means the same
    data. A name a plugin already registers (``registry``) is refused too."""
    import json

    from saebench_sanity.errors import ConfigError
    from saebench_sanity.paths import safe_name

    safe_name("activation set name", name)
    folder = store_dir(root if root is not None else store_root(), name)
    path = folder / USER_SET_FILE
    existing = registry.items["activation_set"].get(name) if registry is not None else None
    # a user set this process registered earlier and `activations rm` deleted since is no plugin's
    if existing is not None and getattr(existing, "plugin", None) != "user-sets" and not path.is_file():
        raise ConfigError(f"activation set name {name!r} is registered by plugin {getattr(existing, 'plugin', '?')!r}; "
                          "give your set another name")
    # the name is bound once a build started (its plan is written after the model, hook point and
    # corpus were checked); a declaration whose build failed before that may be corrected
    started = (folder / "build-plan.json").is_file()
    old = None
    if path.is_file() and started:
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if (isinstance(old, dict) and "massive_norm_ratio" not in recipe
                and "massive_norm_ratio" not in (old.get("params") or {})):
            # declared before massive flags existed: the same recipe still means that set (no flags)
            recipe = {**recipe, "massive_norm_ratio": None}
    params = user_set_params(name, **recipe)
    record = {"name": name, "recipe": {k: recipe[k] for k in sorted(recipe)}, "params": params}
    if path.is_file() and started:
        if not isinstance(old, dict) or old.get("params") != json.loads(json.dumps(params)):
            before = (old or {}).get("recipe", {}) if isinstance(old, dict) else {}
            diff = [k for k in sorted(set(before) | set(recipe)) if before.get(k) != recipe.get(k)]
            raise DataError(f"activation set {name!r} already exists with other parameters "
                            f"({', '.join(f'{k}: {before.get(k)!r} -> {recipe.get(k)!r}' for k in diff[:3]) or 'recipe'}); "
                            f"give the new set another name, or `saebench activations rm {name}` first")
    else:
        if started:
            raise DataError(f"activation set {name!r} already exists in {str(folder)!r} and was not declared as a user "
                            f"set; give yours another name, or `saebench activations rm {name}` first")
        folder.mkdir(parents=True, exist_ok=True)
        from saebench_sanity.io import atomic_write_json

        atomic_write_json(path, record)
    return _user_spec(name, params, {**recipe, **{k: recipe.get(k, v) for k, v in
                                                  (("corpus", "default"), ("n_train_tokens", 65_024),
                                                   ("n_eval_tokens", 8_128))}})


def user_set_specs(root: str | Path | None = None) -> list[Any]:
    """Specs of every declared user set under the store root (``user-set.json`` files), for the
    built-in plugin: so a set declared once is known by name in every process. A damaged file is
    skipped with a log line (it must not break the registry)."""
    import json
    import logging

    base = Path(root) if root is not None else store_root()
    out = []
    for path in sorted(base.glob(f"*/{USER_SET_FILE}")) if base.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            recipe = _recorded_recipe(record)
            params = user_set_params(record["name"], **recipe)
            if record["name"] != path.parent.name or params != record["params"]:
                raise ValueError("name or parameters do not match the folder")
            out.append(_user_spec(record["name"], params, {"corpus": "default", "n_train_tokens": 65_024,
                                                            "n_eval_tokens": 8_128, **recipe}))
        except Exception as exc:  # noqa: BLE001 - one bad file must not hide the other sets
            logging.getLogger(__name__).warning("skipping user activation set %s: %s; `saebench activations rm %s` "
                                                "removes it", path, exc, path.parent.name)
    return out


def register_user_sets(recipes: dict[str, dict[str, Any]], registry: Any, root: str | Path | None = None) -> list[str]:
    """Declare each ``name -> recipe`` (``declare_user_set``) and add its spec to ``registry``
    (a set already declared identically is already there through ``user_set_specs``). Returns the
    names."""
    from saebench_sanity.registry import KINDS

    for name, recipe in recipes.items():
        spec = declare_user_set(name, recipe, root, registry)  # refuses a plugin's name
        existing = registry.items["activation_set"].get(name)
        if existing is None or existing.params != spec.params:  # new, or a corrected unbuilt declaration
            registry.items["activation_set"].pop(name, None)
            registry._add(KINDS["activation_set"], spec, "user-sets", None)
    return list(recipes)
