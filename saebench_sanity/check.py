"""``saebench check``: does *your* SAE beat the study's random baselines?

Takes an SAE in the SAELens on-disk format (a local folder, or a SAELens pretrained release +
id when online), an activation set whose ``d_in`` matches, trains the random baselines with the
same architecture, size and sparsity on that set, scores everything on the same held-out data
with the chosen metrics and applies the leaderboard's verdict rule (``leaderboard.verdict``),
with the user's SAE as one fixed value (``fixed_trained``: a one-sample t interval over the
baselines' seeds, which need at least ``min_seeds``).

Input spaces: real sets serve activations normalized to mean squared norm ``d_in``; an SAE gets
its inputs in the space it was trained in (``sae_input_scale``: raw activations when its cfg says
``normalize_activations = "none"``, which every SAE this suite saves says, its own recorded
factor for ``expected_average_only_in``), through ``activations.real.SetSpaceSAE``. Every score,
the user's and the baselines', is computed on the set's served activations, so scale-dependent
scores (MSE) share the set's units.

Without a set name the set comes from the SAE's SAELens metadata (``derive_set``: model, hook
point, context), declared as a user-defined set over a corpus the user names. Baselines train as
the embedded suite that lists the set trains it (``baseline_training_config``).

A check is a plan run by ``saebench run``'s harness: the baselines are cells (``baseline_cells``,
keyed by ``baseline_key``, so another SAE of the same shape on the same set trains nothing new),
the baselines of one seed one cohort, run by the registered ``local`` executor (``--jobs N``: a
pool of N processes with ``cores // N`` torch threads each, as ``saebench run --jobs``) into the
cache folder, a ``harness.store`` store; the user's SAE is one *provided* cell (``PROVIDED``,
keyed by the hash of its weights: ``provided_key``) that ``harness.executor.run_cell`` scores as
it is and never trains. Every score is read back from the cells' records, so the report does not
depend on the number of jobs, and an interrupted check resumes from what is stored. Cached
records from another build of a stored set (``data_sha256``, ``harness.run.from_other_builds``)
are redone.

Exit status (see ``cli_check``): 0 when the SAE BEATS every baseline on every chosen score with a
direction (PASS), 1 when some score FAILS or the verdicts are mixed / inconclusive, 3 when no score
could be judged at all (NO VERDICT: every row UNDERTRAINED, AT CHANCE, SEEDS or L0 NOT MATCHED;
``CheckReport.outcome``), 2 on bad input.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from saebench_sanity.errors import ConfigError, DataError

#: exit codes of ``saebench check`` by outcome (bad input exits 2, as every command)
EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 1, "NO VERDICT": 3}


#: the options of a set derived from the SAE's metadata (``derive_set``) by their CLI flag
DERIVED_SET_OPTIONS = {"--corpus": "corpus", "--tokens": "n_train_tokens", "--eval-tokens": "n_eval_tokens",
                       "--context-len": "context_len", "--model": "model"}


@dataclass
class CheckOptions:
    target: str
    set_name: str | None = None                    # None: derived from the SAE's metadata (``derive_set``)
    sae_id: str | None = None
    arch: str | None = None                       # registered architecture; None = from the SAE's cfg
    cache_dir: str | Path | None = None           # baseline cache; None = baseline_cache_root()
    # a set derived from the SAE's metadata (no set_name): its corpus and size (``derive_set``)
    corpus: str = "default"
    n_train_tokens: int = 65_024
    n_eval_tokens: int = 8_128
    context_len: int | None = None                # None: the SAE's training context (metadata), else 128
    model: str | None = None                      # None: the SAE's metadata model_name
    device: str = "cpu"                           # where baselines train and everything is scored (devices.resolve_device); not in their identity
    dtype: str = "float32"                        # baselines' training precision (as run.dtype); part of their identity
    metrics: tuple[str, ...] | None = None      # "metric" or "metric.score" selectors; None = all
    modes: tuple[str, ...] | None = None      # baselines; None = every is_baseline mode
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int | None = None
    min_effect: float = 0.01
    confidence: float = 0.95
    jobs: int = 1                                 # baseline cohorts (one per seed) in parallel processes; 1 = in this process

    def __post_init__(self) -> None:
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ConfigError(f"--jobs = {self.jobs!r} must be a positive integer")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"--confidence = {self.confidence!r} must be in [0.5, 1), e.g. 0.95")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError("--seeds must list non-negative integers, e.g. --seeds 0,1,2")
        # a repeated seed or mode would enter the verdict twice: one training run counted as two seeds
        from saebench_sanity.config import repeated

        for flag, items, why in (("--seeds", self.seeds, " (a repeated seed would count one training run as two)"),
                                 ("--modes", self.modes or (), ""), ("--metrics", self.metrics or (), "")):
            if twice := repeated(items):
                raise ConfigError(f"{flag} lists {', '.join(twice)} twice; each entry once{why}")
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"--steps = {self.steps} must be a positive integer")


@dataclass
class CheckReport:
    sae: dict[str, Any]
    set_name: str
    architecture: str
    baselines: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)   # one per score
    skipped: dict[str, str] = field(default_factory=dict)     # metric -> reason
    #: per baseline mode: one entry per seed ``{"seed", "steps", "converged", "l0", "cached"}``
    training: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        judged = [r for r in self.rows if r["direction"] is not None]
        return bool(judged) and all(r["verdict"] == "BEATS" for r in judged)

    @property
    def outcome(self) -> str:
        """``PASS`` (BEATS on every score with a direction), ``FAIL`` (some score FAILS),
        ``NO VERDICT`` (no score could be judged: too few seeds, undertrained, L0 not matched, no
        data) or ``INCONCLUSIVE`` (none fails, not all beat)."""
        from saebench_sanity.leaderboard.verdict import FAILS, JUDGED

        judged = [r for r in self.rows if r["direction"] is not None]
        if self.passed:
            return "PASS"
        if any(r["verdict"] == FAILS for r in judged):
            return "FAIL"
        if not any(r["verdict"] in JUDGED for r in judged):
            return "NO VERDICT"
        return "INCONCLUSIVE"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {"sae": self.sae, "set": self.set_name, "architecture": self.architecture,
                "baselines": self.baselines, "passed": self.passed, "outcome": self.outcome,
                "exit_code": self.exit_code, "scores": self.rows, "skipped": self.skipped,
                "training": self.training, "warnings": self.warnings}


def load_user_sae(target: str, sae_id: str | None = None) -> tuple[Any, str, Path | None]:
    """``(sae_lens SAE, description, folder or None)`` from a local SAELens folder, or a
    pretrained release+id (``SAE.from_pretrained`` folds a release's known normalization factor
    into the weights)."""
    from saebench_sanity.architectures.checkpoint import load_checkpoint

    path = Path(target)
    if path.exists() and sae_id is not None:  # a local copy of a release: one folder per SAE id
        folder = path / sae_id
        if not folder.is_dir():
            raise DataError(f"release folder {str(path)!r} has no SAE id {sae_id!r} (no folder {str(folder)!r}); "
                            "pass an id that is a sub-folder of it")
        return load_checkpoint(folder), f"{path.name}/{sae_id}", folder
    if path.exists():
        return load_checkpoint(path), str(path), path
    if sae_id is None:
        raise DataError(f"{target!r} is not a folder; pass an SAELens SAE folder, or a SAELens release with --sae-id ID")
    from sae_lens import SAE

    try:  # the real hub path: users have internet (not exercised offline)
        return SAE.from_pretrained(target, sae_id, device="cpu"), f"{target}/{sae_id}", None
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).splitlines() or [""])[0]
        raise DataError(f"could not load SAELens release {target!r} id {sae_id!r} ({type(exc).__name__}: {first}); "
                        "check the names, or download it and pass the folder") from None


#: sae-lens ``normalize_activations`` values sae-lens applies itself inside ``encode``/``decode``
#: (so the SAE takes raw activations)
_RUNTIME_NORMALIZATIONS = ("none", "constant_norm_rescale", "layer_norm")


def sae_input_scale(sae: Any, folder: str | Path | None = None) -> float:
    """The factor the SAE expects raw model activations multiplied by (the space it was trained
    in): 1.0 when its cfg says ``normalize_activations`` is ``none`` (or a normalization sae-lens
    applies at run time); for ``expected_average_only_in`` the factor SAELens's trainer recorded
    beside the weights in ``folder`` (``activation_scaler.json``, sae-lens's checkpoint format).
    DataError when the factor is not recorded or the normalization cannot be undone here."""
    norm = getattr(sae.cfg, "normalize_activations", "none") or "none"
    if norm in _RUNTIME_NORMALIZATIONS:
        return 1.0
    if norm == "expected_average_only_in":
        import json

        from sae_lens.constants import ACTIVATION_SCALER_CFG_FILENAME

        scaler = Path(folder) / ACTIVATION_SCALER_CFG_FILENAME if folder is not None else None
        factor = None
        if scaler is not None and scaler.is_file():
            try:
                factor = json.loads(scaler.read_text()).get("scaling_factor")
            except ValueError:
                factor = None
        if isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0:
            return float(factor)
        raise DataError("the SAE's cfg says normalize_activations = 'expected_average_only_in' but records no scaling "
                        f"factor ({ACTIVATION_SCALER_CFG_FILENAME} with scaling_factor beside cfg.json); fold it into the "
                        "weights with sae.fold_activation_norm_scaling_factor(factor) and save again")
    raise DataError(f"the SAE's cfg says normalize_activations = {norm!r}, which saebench check cannot apply; fold it "
                    "into the weights (sae-lens fold_activation_norm_scaling_factor / fold_activation_whitening) and save again")


_TL_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(resid_post|resid_pre|mlp_out|attn_out)$")


def hook_point_of(hook_name: str) -> str:
    """This suite's hook point for a TransformerLens hook name (SAELens metadata ``hook_name``):
    ``blocks.L.hook_resid_post`` -> ``resid_post.L`` (``mlp_out``, ``attn_out`` alike),
    ``blocks.L.hook_resid_pre`` -> ``resid_post.(L-1)`` (the same tensor). DataError otherwise."""
    m = _TL_HOOK.match(hook_name or "")
    if m is None:
        raise DataError(f"the SAE's hook {hook_name!r} has no counterpart here (resid_post, resid_pre, mlp_out, "
                        "attn_out of a block); pass --set with a matching activation set")
    layer, kind = int(m.group(1)), m.group(2)
    if kind == "resid_pre":
        if layer == 0:
            raise DataError("the SAE reads blocks.0.hook_resid_pre (the embeddings), which no hook point here "
                            "records; pass --set with a matching activation set")
        return f"resid_post.{layer - 1}"
    return f"{kind}.{layer}"


def model_of(model_name: str) -> str:
    """A model reference ``load_causal_lm`` takes for SAELens metadata ``model_name``: a local
    folder as it is, else the hub id TransformerLens's official-name table gives (``gemma-2-2b``
    -> ``google/gemma-2-2b``), else the name itself."""
    if not model_name or Path(model_name).exists() or "/" in model_name:
        return model_name
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        return get_official_model_name(model_name)
    except Exception:  # noqa: BLE001 - not installed or not a name it knows: use the name as given
        return model_name


def option_defaults() -> dict[str, Any]:
    """``CheckOptions``' field defaults by name: the CLI's defaults (cli_check) and what
    ``derived_set_options_given`` compares with, so the two cannot drift apart."""
    return {f.name: f.default for f in dataclasses.fields(CheckOptions)}


def derived_set_options_given(opts: CheckOptions) -> list[str]:
    """The flags of ``DERIVED_SET_OPTIONS`` whose value is not ``CheckOptions``' default."""
    defaults = option_defaults()
    return [flag for flag, name in DERIVED_SET_OPTIONS.items() if getattr(opts, name) != defaults[name]]


def derive_set(sae: Any, opts: CheckOptions, registry: Any) -> str:
    """The activation set an SAE was trained on, from its SAELens metadata: the registered set a
    checkpoint of this suite names (``SET_METADATA_KEY``), unless a derived set's option is given;
    else a set declared (or reused) from ``model_name``, ``hook_name``, ``context_size`` and
    ``prepend_bos`` over ``opts.corpus`` with ``opts``' token counts, named ``auto-...`` (a hash
    of the recipe, so the same recipe reuses one stored set). DataError when the metadata names
    neither."""
    from saebench_sanity.activations.base import stable_hash
    from saebench_sanity.activations.real import register_user_sets
    from saebench_sanity.architectures.checkpoint import SET_METADATA_KEY

    meta = getattr(sae.cfg, "metadata", None)
    named = meta.get(SET_METADATA_KEY) if meta is not None else None
    if meta is not None and isinstance(named, str) and named in registry.items["activation_set"] and not derived_set_options_given(opts):
        # a set of that name here reads where the checkpoint says it read (a user set declared
        # under the same name with another recipe would not): else the SAELens fields decide
        params = getattr(registry.get("activation_set", named), "params", None) or {}
        recorded = {"hook_point": meta.get("hook_name"), "model": meta.get("model_name")}
        here = {"hook_point": params.get("hook_point"), "model": params.get("model")}
        if recorded["hook_point"]:
            recorded["hook_point"] = hook_point_of(str(recorded["hook_point"]))
        if all(recorded[k] in (None, here[k]) for k in recorded):
            return named
    model_name = opts.model or (meta.get("model_name") if meta is not None else None)
    hook_name = meta.get("hook_name") if meta is not None else None
    if not model_name or not hook_name:
        missing = " and ".join(k for k, v in (("model_name", model_name), ("hook_name", hook_name)) if not v)
        fix = ("pass --model, or --set with a matching activation set" if hook_name else
               "pass --set with a matching activation set (`saebench activations build --name NAME --model M "
               "--hook-point H` builds one)")
        raise DataError(f"the SAE's metadata does not name its {missing}; {fix}")
    context = opts.context_len or (meta.get("context_size") if meta is not None else None) or 128
    recipe = {"model": model_of(str(model_name)), "hook_point": hook_point_of(str(hook_name)), "corpus": opts.corpus,
              "context_len": int(context), "n_train_tokens": int(opts.n_train_tokens),
              "n_eval_tokens": int(opts.n_eval_tokens)}
    bos = meta.get("prepend_bos") if meta is not None else None
    if isinstance(bos, bool):
        recipe["prepend_bos"] = bos
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{Path(str(recipe['model'])).name}-{recipe['hook_point']}").strip("-").lower()
    name = f"auto-{slug}-{stable_hash(recipe)[:8]}"
    register_user_sets({name: recipe}, registry)
    return name


def architecture_of(sae: Any, registry: Any, name: str | None = None) -> Any:
    """The registered architecture a loaded SAE was trained as (SAELens records it in metadata).

    ``name`` (``--arch``) picks one registered architecture explicitly; it must build the SAE's
    sae-lens class. Without it the SAE's sae-lens architecture must match exactly one registered
    architecture (a plugin sharing a built-in's sae-lens class makes the choice ambiguous)."""
    meta = getattr(sae.cfg, "metadata", None)
    trained_as = getattr(meta, "training_architecture", None) if meta is not None else None
    inference = sae.cfg.architecture()
    specs = registry.items["architecture"]
    if name is not None:
        spec = registry.get("architecture", name)
        if spec.sae_lens_architecture not in (trained_as, inference):
            raise ConfigError(f"--arch {name!r} builds sae-lens {spec.sae_lens_architecture!r} SAEs, the given SAE is "
                              f"{trained_as or inference!r}; choose an architecture of that class")
        return spec
    for sl_name in (trained_as, inference):
        matches = sorted(n for n, spec in specs.items() if sl_name and spec.sae_lens_architecture == sl_name)
        if len(matches) > 1:
            raise ConfigError(f"several registered architectures build sae-lens {sl_name!r} SAEs ({', '.join(matches)}); "
                              "choose one with --arch")
        if matches:
            return specs[matches[0]]
    raise DataError(f"SAE architecture {trained_as or inference!r} has no registered saebench architecture; "
                    f"known: {', '.join(sorted(specs))}")


def _measured_l0(sae: Any, acts: Any) -> float:
    import torch

    from saebench_sanity.devices import module_device

    with torch.no_grad():
        return float((sae.encode(acts[:4096].to(module_device(sae))) != 0).float().sum(-1).mean())


def baseline_target_l0(l0: float) -> float | None:
    """The target L0 of the baselines of a penalty SAE (no ``k``) that measured ``l0``: the nearest
    whole number when that is within 5% of it (half the L0 tolerance; always from L0 10 up), so
    SAEs of one shape and about one sparsity share cached baselines; else ``l0`` to two decimals
    (a small or fractional L0, e.g. 2.6, which the integer 3 would leave L0 NOT MATCHED). None
    for an SAE with no active latents."""
    if not (math.isfinite(l0) and l0 > 0):
        return None
    whole = max(1, int(round(l0)))
    if abs(whole - l0) <= 0.05 * l0:
        return whole
    return round(l0, 2) or 0.01


def _sparsity_of(sae: Any, arch: Any, acts: Any) -> tuple[float | None, dict[str, Any]]:
    """``(target_l0, arch_overrides)`` that give the baselines the user's sparsity: a TopK-family
    SAE's ``k``, else its measured L0 (``baseline_target_l0``)."""
    details = getattr(getattr(sae.cfg, "metadata", None), "training_architecture_details", None) or {}
    params: dict[str, Any] = {}
    for key in (arch.sparsity_param, "l1_coefficient", "l0_coefficient"):
        if key and key in details and key != "k":
            params[key] = details[key]
    k = details.get("k", getattr(sae.cfg, "k", None))
    if k is not None:
        return int(round(float(k))), params
    return baseline_target_l0(_measured_l0(sae, acts)), params


def baseline_budget(set_name: str, recommended: dict[str, Any] | None, arch: str) -> tuple[Any, dict[str, Any], str]:
    """``(training config, the suite's architecture parameters for this set, description)`` the
    baselines of an ``arch`` SAE on ``set_name`` train with: the suite's budget for that (set,
    architecture) (``training_for(set, recommended, arch)``), as the leaderboard trains them."""
    run_cfg, source = baseline_training_config(set_name, arch)
    return run_cfg.training_for(set_name, recommended, arch), run_cfg.architecture_params_for(set_name, arch), source


def baseline_training_config(set_name: str, arch: str) -> tuple[Any, str]:
    """``(run config, description)`` whose ``training_for(set_name, ..., arch)`` trains the baselines: the
    first embedded suite that lists the set (its leaderboard's budget: up to ``max_steps``, stopping
    early once the convergence rule says the loss is level), else the run defaults with the set's
    recommendation (also with early stop)."""
    from saebench_sanity import config as config_mod

    for suite in config_mod.EMBEDDED_SUITES:
        if suite == "quick":  # a smoke test's budgets, not a leaderboard's
            continue
        cfg = config_mod.embedded(suite)
        if set_name in cfg.sets:
            return cfg, f"as the embedded suite {suite!r} trains this set"
    cfg = config_mod.from_dict({"run": {"sets": [set_name], "architectures": [arch], "modes": ["trained"]}})
    return cfg, "with the run defaults and the set's recommended budget"


def baseline_cache_root() -> Path:
    """``$SAEBENCH_CACHE/check-baselines``: trained baselines of ``saebench check``, one
    ``harness.store`` checkpoint per identity (``baseline_key``)."""
    from saebench_sanity.models.default_model import cache_root

    return cache_root() / "check-baselines"


def baseline_key(*, set_manifest_hash: str, arch: str, arch_overrides: dict[str, Any], mode: str, seed: int,
                 d_sae: int, target_l0: float | None, training: Any, dtype: str = "float32",
                 plugins: tuple[tuple[str, str], ...] = ()) -> str:
    """Identity of one baseline of ``check``: everything that decides what it trains (the set's
    recipe, architecture and its overrides, mode, seed, size, sparsity, training config, dtype,
    the code version of every cache key, and the distribution and version of non-built-in plugins
    behind the set, architecture and mode: ``harness.plan.plugin_versions``). Another SAE of the
    same shape and sparsity on the same set has the same baselines, so a re-check trains nothing
    new."""
    from saebench_sanity.activations.base import stable_hash
    from saebench_sanity.harness.plan import code_version
    from saebench_sanity.training.trainer import init_key_material

    return stable_hash({"kind": "check-baseline", "set": set_manifest_hash, "arch": arch,
                        "arch_overrides": arch_overrides, "mode": mode, "seed": int(seed), "d_sae": int(d_sae),
                        "target_l0": target_l0, "training": dataclasses.asdict(training), "dtype": dtype,
                        "code": code_version(), **init_key_material(dtype),
                        **({"plugins": [list(p) for p in plugins]} if plugins else {})})[:24]

#: the mode of the provided cell (the user's SAE): no registered training mode, never trained
PROVIDED = "provided"


def provided_key(sae: Any, *, input_scale: float, set_manifest_hash: str) -> str:
    """Identity of a provided SAE's scores: sha256 over its weights (every tensor's name, dtype,
    shape and bytes, in name order), its cfg, the factor its inputs are given in, the set's recipe
    and the code version. The same SAE checked again reuses its stored scores; any changed weight
    or setting is scored anew."""
    import hashlib

    import torch

    from saebench_sanity.activations.base import stable_hash
    from saebench_sanity.harness.plan import code_version

    digest = hashlib.sha256()
    for name, tensor in sorted(sae.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy())  # raw bytes of any dtype (bfloat16 has no numpy type)
    cfg = sae.cfg.to_dict() if hasattr(sae.cfg, "to_dict") else vars(sae.cfg)
    return stable_hash({"kind": "check-provided", "weights": digest.hexdigest(), "cfg": cfg,
                        "input_scale": float(input_scale), "set": set_manifest_hash, "code": code_version()})[:24]


def baseline_cells(*, set_name: str, set_manifest_hash: str, arch: Any, arch_overrides: dict[str, Any],
                   modes: list[Any], seeds: tuple[int, ...], d_sae: int, target_l0: float | None, training: Any,
                   dtype: str, registry: Any, set_spec: Any = None) -> list[Any]:
    """The baselines of a check as harness cells (``harness.plan.Cell``), seed-major: the modes of
    one seed share set, architecture, size, training and seed, so they form one cohort
    (``harness.executor.cohorts``), as in ``saebench run``. Each cell's key is ``baseline_key``
    (the identity check's cache has always used), so baselines cached by earlier checks stay in use."""
    from saebench_sanity.architectures.sparsity import resolve_arch_params
    from saebench_sanity.harness.plan import Cell, plugin_versions

    arch_params = resolve_arch_params(arch, target_l0, arch_overrides)
    cells = []
    for seed in seeds:
        for mode in modes:
            plugins = plugin_versions(registry, [s for s in (set_spec, arch, mode) if s is not None])
            key = baseline_key(set_manifest_hash=set_manifest_hash, arch=arch.name, arch_overrides=arch_overrides,
                               mode=mode.name, seed=int(seed), d_sae=d_sae, target_l0=target_l0, training=training,
                               dtype=dtype, plugins=plugins)
            # mode_params: the spec's defaults, what ``mode.build()`` used when check trained with none
            cells.append(Cell(set_name=set_name, arch=arch.name, mode=mode.name, seed=int(seed), d_sae=d_sae,
                              target_l0=target_l0, arch_params=arch_params, arch_overrides=dict(arch_overrides),
                              mode_params=dict(mode.params), training=training, set_manifest_hash=set_manifest_hash,
                              is_baseline=True, trains=True, dtype=dtype, plugins=plugins, key=key))
    return cells


def _recorded_scores(store: Any, cell: Any, outcome: Any, metrics: list[Any],
                     what: str) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, Any]]:
    """``({metric: {score: value}}, {metric: skip reason}, record)`` of a cell the harness ran
    (``outcome``: its ``CellOutcome``), read from its record (returned too, read once). A cell that failed raises its
    one-line error (DataError for bad input, RuntimeError otherwise), as does a metric that raised."""
    from saebench_sanity.harness.executor import FAILED, OK, SKIPPED

    if outcome is None or outcome.status == FAILED:
        error = outcome.error if outcome is not None else "the executor returned no outcome"
        if outcome is not None and outcome.error_kind == "input":
            raise DataError(f"{what}: {error}")
        raise RuntimeError(f"{what}: {error}")
    rec = store.load_result(cell.key) or {}
    scores: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for mp in metrics:
        entry = (rec.get("metrics") or {}).get(mp.key) or {}
        if entry.get("status") == OK:
            scores[mp.name] = {k: float(v) for k, v in (entry.get("scores") or {}).items()}
        elif entry.get("status") == SKIPPED:
            skipped[mp.name] = str(entry.get("reason") or "skipped")
        else:
            raise RuntimeError(f"metric {mp.name!r} on {what}: {entry.get('error') or 'no result recorded'}")
    return scores, skipped, rec


def run_check(opts: CheckOptions, registry: Any, progress: Callable[[str], None] | None = None) -> CheckReport:
    """Check one SAE (see module docstring): the baselines as cells of a plan run by the harness
    executor, the user's SAE as one provided cell scored by the same ``run_cell``, the leaderboard's
    ``judge`` on the scores."""
    from saebench_sanity.activations.real import check_sae_d_in, sae_in_set_space, set_scale
    from saebench_sanity.architectures.sparsity import targets_l0
    from saebench_sanity.config import from_dict
    from saebench_sanity.devices import resolve_device, resolve_dtype
    from saebench_sanity.harness.executor import NullReporter, has_current_checkpoint, run_cell
    from saebench_sanity.harness.plan import Cell, MetricPlan, Plan, metric_key, plugin_versions
    from saebench_sanity.harness.run import from_other_builds
    from saebench_sanity.results import ResultStore
    from saebench_sanity.leaderboard.verdict import L0_TOLERANCE, MIN_SEEDS, Stats, judge

    say = progress or (lambda _msg: None)
    device = resolve_device(opts.device, "--device")  # an unavailable device: one line before any work
    resolve_dtype(opts.dtype, device, "--dtype")  # a dtype this device cannot do: likewise
    if opts.set_name is not None:
        registry.get("activation_set", opts.set_name)  # an unknown name: one line before loading anything
        # the derived set's recipe options would be ignored with --set: refused, not dropped
        given = derived_set_options_given(opts)
        if given:
            raise ConfigError(f"{', '.join(given)}: only for a set built from the SAE's metadata (no --set); "
                              f"set {opts.set_name!r} has its own recipe (`saebench list`)")
    wanted_scores: dict[str, set[str] | None] = {}
    for selector in opts.metrics or registry.names("metric"):
        metric, _, score = selector.partition(".")
        spec = registry.get("metric", metric)
        if score and score not in spec.scores:
            raise ConfigError(f"--metrics: metric {metric!r} has no score {score!r}; its scores: {', '.join(sorted(spec.scores))}")
        if score:
            wanted = wanted_scores.setdefault(metric, set())
            if wanted is not None:
                wanted.add(score)
        else:
            wanted_scores[metric] = None
    metric_specs = [registry.get("metric", m) for m in wanted_scores]
    mode_names = list(opts.modes) if opts.modes else [n for n in registry.names("training_mode")
                                                     if registry.get("training_mode", n).is_baseline]
    modes = [registry.get("training_mode", m) for m in mode_names]
    for m in modes:
        if not m.is_baseline:
            raise ConfigError(f"--modes: {m.name!r} is not a baseline; choose from "
                              f"{', '.join(n for n in registry.names('training_mode') if registry.get('training_mode', n).is_baseline)}")

    raw_sae, description, folder = load_user_sae(opts.target, opts.sae_id)
    if device != "cpu":  # loaded on the CPU; scored where the baselines are
        raw_sae = raw_sae.to(device)
    if opts.set_name is None:
        opts = dataclasses.replace(opts, set_name=derive_set(raw_sae, opts, registry))
        say(f"activation set {opts.set_name} (from the SAE's metadata; built on first use if stored)")
    set_name = str(opts.set_name)
    set_spec = registry.get("activation_set", set_name)
    if set_spec.d_in is not None and int(set_spec.d_in) != int(raw_sae.cfg.d_in):
        raise DataError(f"SAE d_in {raw_sae.cfg.d_in} does not match activation set {set_name!r} (d_in {set_spec.d_in}); "
                        "choose a set harvested at the SAE's model and hook point")
    say(f"loaded {description} ({raw_sae.cfg.architecture()}, d_in {raw_sae.cfg.d_in}, d_sae {raw_sae.cfg.d_sae})")
    arch = architecture_of(raw_sae, registry, opts.arch)
    input_scale = sae_input_scale(raw_sae, folder)
    aset = set_spec.build()
    check_sae_d_in(int(raw_sae.cfg.d_in), aset)
    # the user's SAE receives activations in the space it was trained in; scores are on the set's
    sae = sae_in_set_space(raw_sae, aset, input_scale)
    eval_acts = aset.eval_activations()
    target_l0, arch_overrides = _sparsity_of(sae, arch, eval_acts)
    training, suite_params, training_source = baseline_budget(set_name, set_spec.training, arch.name)
    # the suite's per-set architecture parameters (e.g. an L1 coefficient suited to the set's
    # scale), under the ones read from the user's SAE
    arch_overrides = {**suite_params, **arch_overrides}
    if opts.steps is not None:
        training = dataclasses.replace(training, max_steps=opts.steps,
                                       lr_warm_up_steps=min(training.lr_warm_up_steps, opts.steps // 2),
                                       lr_decay_steps=min(training.lr_decay_steps, opts.steps // 2),
                                       sparsity_warm_up_steps=min(training.sparsity_warm_up_steps, opts.steps))

    report = CheckReport(sae={"source": description, "architecture": arch.name, "d_in": int(raw_sae.cfg.d_in),
                              "d_sae": int(raw_sae.cfg.d_sae), "target_l0": target_l0,
                              "input_scale": input_scale, "set_scale": set_scale(aset),
                              "training_source": training_source if opts.steps is None else f"with --steps {opts.steps}",
                              "device": device, "baseline_dtype": opts.dtype},
                         set_name=set_name, architecture=arch.name, baselines=mode_names)
    applicable = []
    for spec in metric_specs:
        missing = set(spec.needs) - set(aset.provides)
        if missing:
            report.skipped[spec.name] = f"activation set {set_name!r} does not provide {', '.join(sorted(missing))}"
        else:
            applicable.append(spec)
    if not applicable:
        raise _nothing_applies(set_name, report.skipped)
    metrics = [MetricPlan(name=spec.name, params=dict(spec.params), needs=frozenset(spec.needs),
                          key=metric_key(spec.name, dict(spec.params), plugin_versions(registry, [spec])))
               for spec in applicable]

    cache_dir = Path(opts.cache_dir if opts.cache_dir is not None else baseline_cache_root())
    store = ResultStore(cache_dir)
    manifest_hash = aset.manifest_hash()
    d_sae = int(raw_sae.cfg.d_sae)
    cells = baseline_cells(set_name=set_name, set_manifest_hash=manifest_hash, arch=arch, arch_overrides=arch_overrides,
                           modes=modes, seeds=opts.seeds, d_sae=d_sae, target_l0=target_l0, training=training,
                           dtype=opts.dtype, registry=registry,
                           set_spec=registry.items["activation_set"].get(getattr(aset, "name", "")))
    # the user's SAE: a provided cell, scored by the harness's run_cell as it is (never trained),
    # its record kept in the cache under the hash of its weights
    provided = Cell(set_name=set_name, arch=arch.name, mode=PROVIDED, seed=0, d_sae=d_sae, target_l0=target_l0,
                    arch_params={}, arch_overrides={}, mode_params={"input_scale": input_scale}, training=training,
                    set_manifest_hash=manifest_hash, trains=False,
                    dtype=str(getattr(raw_sae.cfg, "dtype", None) or "float32"),
                    key=provided_key(raw_sae, input_scale=input_scale, set_manifest_hash=manifest_hash))
    # A cached record keeps its key across builds of the set's recipe but holds the numbers of the
    # bytes it saw: cached baselines (or scores of this SAE) from another build of the set are
    # stale here, so they are trained and scored again on this build.
    stale = set(from_other_builds(store, [c.key for c in [*cells, provided]], getattr(aset, "stored_content_sha256", None)))
    if stale:
        say(f"{len(stale)} cached record(s) in {store.root} came from another build of set {set_name!r}: "
            "training and scoring them again on this machine's store")
    sae.eval()
    user_outcome = run_cell(provided, metrics, aset, lambda: eval_acts, store, registry, device=device, sae=sae,
                            force=provided.key in stale)

    todo = {c.key for c in cells if c.key in stale or not has_current_checkpoint(store, c.key, c.training)}
    for seed in opts.seeds:
        names = [c.mode for c in cells if c.seed == seed and c.key in todo]
        if names:
            say(f"training baselines {', '.join(names)} seed {seed} (at most {training.max_steps} steps)"
                + (f"; {opts.jobs} seeds at a time" if opts.jobs > 1 else ""))
        else:
            say(f"baselines of seed {seed}: cached ({store.root})")
    # the executor reads the plan's config only for the set's parameters: none (check builds the
    # set as registered; it is built here already, pool workers build it by name and check its hash)
    plan = Plan(config=from_dict({"run": {"sets": [set_name], "architectures": [arch.name], "modes": ["trained"]}},
                                 source="saebench check"),
                cells=cells, metrics=metrics, sets={set_name: aset})
    executor = registry.get("executor", "local").build(jobs=opts.jobs)
    # one pass: the stale baselines from scratch (force names their keys), the rest as cached
    outcomes = {o.key: o for o in executor.run(plan, store, registry, force=frozenset(c.key for c in cells if c.key in stale),
                                               reporter=NullReporter(), device=device)}

    user_scores, skips, _ = _recorded_scores(store, provided, user_outcome, metrics, f"your SAE ({description})")
    base_scores: dict[str, list[tuple[dict[str, dict[str, float]], bool]]] = {m.name: [] for m in modes}
    base_l0: dict[str, list[float]] = {m.name: [] for m in modes}
    report.training = {m.name: [] for m in modes}
    controlled = False
    for cell in cells:
        scores, skipped, record = _recorded_scores(store, cell, outcomes.get(cell.key), metrics,
                                           f"baseline {cell.mode} seed {cell.seed}")
        for name, reason in skipped.items():
            skips.setdefault(name, reason)
        summary = record.get("training") or {}
        info = store.load_train_info(cell.key)
        # "controlled": checkpoints written before check ran through the harness record it as is
        controlled = controlled or bool(info.get("controlled")) or "l0_control" in (info.get("convergence") or {})
        converged = bool(summary.get("converged"))
        base_scores[cell.mode].append((scores, converged))
        base_l0[cell.mode].append(_final_l0(scores, float(info.get("l0_train", math.nan))))
        report.training[cell.mode].append({"seed": cell.seed, "steps": int(summary.get("steps") or 0),
                                           "max_steps": int(info.get("max_steps", training.max_steps)),
                                           "converged": converged, "l0": base_l0[cell.mode][-1],
                                           "cached": not outcomes[cell.key].trained_now})
    # a metric that could not score some SAE here (NotApplicable, a judge that did not answer)
    report.skipped.update(skips)
    applicable = [spec for spec in applicable if spec.name not in skips]
    if not applicable:
        raise _nothing_applies(set_name, report.skipped)

    # the L0 step of the rule: for architectures whose sparsity targets an L0, and for penalty SAEs
    # whose baselines were steered to the user's L0 (training.match_l0)
    l0_target = (float(target_l0) if target_l0 is not None
                 and (controlled or targets_l0(arch)) else None)
    user_l0 = _final_l0(user_scores, math.nan)
    if not math.isfinite(user_l0):
        user_l0 = _measured_l0(sae, eval_acts)
    report.sae["l0"] = user_l0
    for mode, l0s in base_l0.items():
        mean_l0 = _mean_or_none(l0s)
        if mean_l0 is not None and math.isfinite(user_l0) and abs(mean_l0 - user_l0) > L0_TOLERANCE * max(user_l0, 1e-9):
            report.warnings.append(f"L0 mismatch: your SAE has L0 {user_l0:.1f}, its {mode} baselines reach {mean_l0:.1f} "
                                   f"(more than {L0_TOLERANCE:.0%} apart); scores at different sparsity are not comparable")
    for spec in applicable:
        for score, score_info in spec.scores.items():
            chosen = wanted_scores[spec.name]
            if chosen is not None and score not in chosen:
                continue
            user = Stats.of([user_scores[spec.name][score]], l0=user_l0)
            per_mode = {m: Stats.of([s[spec.name][score] for s, _ in runs], [c for _, c in runs],
                                    l0=_mean_or_none(base_l0[m]))
                        for m, runs in base_scores.items()}
            min_effect = opts.min_effect if score_info.min_effect is None else score_info.min_effect
            v = judge(user, per_mode, score_info.direction, min_effect, opts.confidence, min_seeds=MIN_SEEDS,
                      chance=score_info.chance, target_l0=l0_target, fixed_trained=True,
                      improves_with_training=bool(getattr(score_info, "improves_with_training", False)),
                      best=getattr(score_info, "best", None))
            report.rows.append({
                "metric": spec.name, "score": score, "direction": score_info.direction, "chance": score_info.chance,
                "sae": user.mean, "baselines": {m: {"mean": s.mean, "sd": s.sd, "n": s.n, "converged": s.converged,
                                                    "l0": s.l0} for m, s in per_mode.items()},
                "baseline": v.baseline, "diff": v.diff, "lower": v.lower, "upper": v.upper, "verdict": v.label,
                "fails_vs": list(v.fails_vs),
                "comparisons": {b: {"d": c.d, "se": c.se, "df": c.df, "lower": c.lower, "upper": c.upper}
                                for b, c in v.comparisons.items()},
            })
    return report


def _nothing_applies(set_name: str, skipped: dict[str, str]) -> ConfigError:
    """The one-line error when no chosen metric can score on the set (before training, or after
    the metrics skipped on some SAE)."""
    return ConfigError(f"no chosen metric applies to activation set {set_name!r}: "
                       + "; ".join(f"{k}: {v}" for k, v in skipped.items()))


def _final_l0(scores: dict[str, dict[str, float]], fallback: float) -> float:
    """The ``reconstruction.l0`` score when it was computed, else ``fallback`` (latents per sample)."""
    value = (scores.get("reconstruction") or {}).get("l0")
    return float(value) if value is not None and math.isfinite(float(value)) else float(fallback)


def _mean_or_none(values: list[float]) -> float | None:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None
