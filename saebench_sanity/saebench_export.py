"""Result records as SAEBench eval-output JSON, so results can sit beside published SAEBench tables.

SAEBench (adamkarvonen/SAEBench) writes one JSON file per (SAE, eval type), the fields of its
``BaseEvalOutput`` (``sae_bench/evals/base_eval_output.py``): ``eval_type_id``, ``eval_config``,
``eval_id``, ``datetime_epoch_millis``, ``eval_result_metrics`` (metric categories, each a flat
object of numbers), ``eval_result_details`` (a list), ``eval_result_unstructured``,
``sae_bench_commit_hash``, ``sae_lens_id``, ``sae_lens_release_id``, ``sae_lens_version``,
``sae_cfg_dict``. :func:`export` writes, per stored cell and eval type that cell has scores for,
``<out>/<eval_type_id>/<set>_<arch>_<mode>_s<seed>_<key>_eval_results.json``.

What maps where (our metric / score -> SAEBench eval type / category.field):

core (``sae_bench/evals/core/eval_output.py``)
    reconstruction / explained_variance_saebench -> reconstruction_quality.explained_variance
        (the same v0.6 formula); reconstruction / l0 -> sparsity.l0;
    reconstruction / shrinkage -> shrinkage.l2_ratio (mean ||x_hat|| / ||x||; SAEBench replaces
        input norms < 1e-4 by 1, ours leaves inputs with norm <= 1e-6 out: the same on real data);
    reconstruction / dead_fraction -> misc_metrics.frac_alive as 1 - dead_fraction;
    loss_recovered / loss_recovered, ce_zero, ce_sae, ce_clean ->
        model_performance_preservation.ce_loss_score, ce_loss_with_ablation, ce_loss_with_sae,
        ce_loss_without_sae (zero ablation, as SAEBench); loss_recovered / kl_div_score, kl_div ->
        model_behavior_preservation.kl_div_score, kl_div_with_sae.
sparse_probing (``sae_bench/evals/sparse_probing/eval_output.py``)
    sparse_probing / full_probe -> llm.llm_test_accuracy; top{k} -> sae.sae_top_{k}_test_accuracy
    for SAEBench's k (1, 2, 5, 10, 20, 50, 100); per task (details) -> one eval_result_details
    entry with ``dataset_name`` and the same fields.
autointerp (``sae_bench/evals/autointerp/eval_output.py``)
    autointerp / score -> autointerp.autointerp_score; the standard deviation (n - 1) of the
    per-latent scores in the entry's details -> autointerp.autointerp_std_dev (as SAEBench's
    ``torch.std``), when at least two latents were scored.
ravel (``sae_bench/evals/ravel/eval_output.py``)
    ravel / cause, isolation, score -> ravel.cause_score, isolation_score, disentanglement_score
    (SAEBench's disentanglement is the mean of cause and isolation, as our ``score``).

Left out, because SAEBench has no field with the same meaning or we do not measure it:
    our textbook ``explained_variance`` (SAELens's; SAEBench's ``explained_variance_legacy`` is a
    per-token average, not the same number); ``mse`` (SAEBench divides each token's squared
    error by the number of tokens in its batch, so its value depends on the batch size); the
    mean-ablation variants of loss recovered and KL score; ``kl_div_with_ablation``, ``cossim``,
    ``l1``, L2 norms, relative reconstruction bias, frequency statistics, token counts and the
    per-feature core details (not recorded); ``sae_test_accuracy`` and the ``llm_top_k``
    accuracies of sparse probing (not computed); autointerp's ``parse_failure_rate``; and the
    metrics without a SAEBench eval type (``reconstruction_bulk``, ``ground_truth`` and plugin
    metrics). A field we cannot fill is absent, never a placeholder. Everything the exported
    entries held (scores, parameters, the cell's identity) is kept verbatim in
    ``eval_result_unstructured["saebench_sanity"]``.

``eval_config`` holds only SAEBench config fields whose meaning we share (e.g. sparse probing's
``random_seed``, ``dataset_names``, ``context_length``, ``k_values``); our own parameters are in
the unstructured part. ``sae_lens_id`` and ``sae_lens_release_id`` are null (our SAEs are trained
here, not published releases); ``sae_lens_version`` and ``sae_cfg_dict`` come from the cell's
stored checkpoint (``cfg.json``) when the results folder has it, else null. SAEBench did not run,
so ``sae_bench_commit_hash`` names the producer (``saebench-sanity-<version>``) instead of a
commit. ``eval_id`` is a UUID derived from the cell key, eval type and metric keys (re-exporting
gives the same id); ``datetime_epoch_millis`` is when the record was last written (its mtime).
"""

from __future__ import annotations

import json
import logging
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from saebench_sanity.errors import DataError

logger = logging.getLogger(__name__)

#: SAEBench's eval types we export, in output order
EVAL_TYPES = ("core", "sparse_probing", "autointerp", "ravel")
#: the k of SAEBench's sparse-probing fields (``sae_top_{k}_test_accuracy``)
SAEBENCH_K = (1, 2, 5, 10, 20, 50, 100)
_NAMESPACE = uuid.UUID("5f0c3d4e-2a7b-4c1e-9b8a-5aeb0c4e5a11")  # fixed: eval ids are reproducible


# -- the output schema, as SAEBench declares it (names and nesting; every field optional here
# -- because we leave out what we do not measure; extra="forbid" so a misspelt field fails) ------
class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CoreBehavior(_Group):
    kl_div_score: float | None = None
    kl_div_with_ablation: float | None = None
    kl_div_with_sae: float | None = None


class CorePerformance(_Group):
    ce_loss_score: float | None = None
    ce_loss_with_ablation: float | None = None
    ce_loss_with_sae: float | None = None
    ce_loss_without_sae: float | None = None


class CoreReconstruction(_Group):
    explained_variance: float | None = None
    explained_variance_legacy: float | None = None
    mse: float | None = None
    cossim: float | None = None


class CoreShrinkage(_Group):
    l2_norm_in: float | None = None
    l2_norm_out: float | None = None
    l2_ratio: float | None = None
    relative_reconstruction_bias: float | None = None


class CoreSparsity(_Group):
    l0: float | None = None
    l1: float | None = None


class CoreMisc(_Group):
    freq_over_1_percent: float | None = None
    freq_over_10_percent: float | None = None
    normalized_freq_over_1_percent: float | None = None
    normalized_freq_over_10_percent: float | None = None
    average_max_encoder_cosine_sim: float | None = None
    average_max_decoder_cosine_sim: float | None = None
    frac_alive: float | None = None


class CoreTokenStats(_Group):
    total_tokens_eval_reconstruction: int | None = None
    total_tokens_eval_sparsity_variance: int | None = None


class CoreMetrics(_Group):
    model_behavior_preservation: CoreBehavior | None = None
    model_performance_preservation: CorePerformance | None = None
    reconstruction_quality: CoreReconstruction | None = None
    shrinkage: CoreShrinkage | None = None
    sparsity: CoreSparsity | None = None
    token_stats: CoreTokenStats | None = None
    misc_metrics: CoreMisc | None = None


def _probing_fields(prefix: str) -> dict[str, Any]:
    names = [f"{prefix}_test_accuracy"] + [f"{prefix}_top_{k}_test_accuracy" for k in SAEBENCH_K]
    return {n: (float | None, None) for n in names}


def _model(name: str, base: type[BaseModel], fields: dict[str, Any]) -> type[BaseModel]:
    from pydantic import create_model

    return create_model(name, __base__=base, **fields)  # type: ignore[call-overload]


ProbingLlm = _model("ProbingLlm", _Group, _probing_fields("llm"))
ProbingSae = _model("ProbingSae", _Group, _probing_fields("sae"))
ProbingDetail = _model("ProbingDetail", _Group, {"dataset_name": (str, ...), **_probing_fields("llm"),
                                                 **_probing_fields("sae")})


class ProbingMetrics(_Group):
    llm: ProbingLlm | None = None  # type: ignore[valid-type]
    sae: ProbingSae | None = None  # type: ignore[valid-type]


class AutoInterpGroup(_Group):
    autointerp_score: float | None = None
    autointerp_std_dev: float | None = None


class AutoInterpMetrics(_Group):
    autointerp: AutoInterpGroup | None = None


class RavelGroup(_Group):
    disentanglement_score: float | None = None
    cause_score: float | None = None
    isolation_score: float | None = None


class RavelMetrics(_Group):
    ravel: RavelGroup | None = None


METRIC_MODELS: dict[str, type[BaseModel]] = {"core": CoreMetrics, "sparse_probing": ProbingMetrics,
                                              "autointerp": AutoInterpMetrics, "ravel": RavelMetrics}
DETAIL_MODELS: dict[str, type[BaseModel]] = {"sparse_probing": ProbingDetail}


class EvalOutput(BaseModel):
    """SAEBench's ``BaseEvalOutput`` fields (names, nesting, types)."""

    model_config = ConfigDict(extra="forbid")

    eval_type_id: str
    eval_config: dict[str, Any]
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: dict[str, Any]
    eval_result_details: list[dict[str, Any]]
    eval_result_unstructured: Any = None
    sae_bench_commit_hash: str
    sae_lens_id: str | None
    sae_lens_release_id: str | None
    sae_lens_version: str | None
    sae_cfg_dict: dict[str, Any] | None

    def check(self) -> None:
        """Validate the metric categories and details against the eval type's own models."""
        METRIC_MODELS[self.eval_type_id].model_validate(self.eval_result_metrics)
        detail = DETAIL_MODELS.get(self.eval_type_id)
        for entry in self.eval_result_details:
            if detail is None:
                raise DataError(f"{self.eval_type_id}: SAEBench declares no result details for this eval type")
            detail.model_validate(entry)


# -- mapping ------------------------------------------------------------------------------------
@dataclass
class _Part:
    """What one eval type gets from a cell's metric entries."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric key -> our entry


def _put(part: _Part, category: str, name: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        part.metrics.setdefault(category, {})[name] = float(value)


def _core_reconstruction(part: _Part, s: dict[str, Any], params: dict[str, Any], entry: dict[str, Any]) -> None:
    _put(part, "reconstruction_quality", "explained_variance", s.get("explained_variance_saebench"))
    _put(part, "sparsity", "l0", s.get("l0"))
    _put(part, "shrinkage", "l2_ratio", s.get("shrinkage"))
    if isinstance(s.get("dead_fraction"), (int, float)):
        _put(part, "misc_metrics", "frac_alive", 1.0 - float(s["dead_fraction"]))
    part.config.update(compute_sparsity_metrics=True, compute_variance_metrics=True)


def _core_loss(part: _Part, s: dict[str, Any], params: dict[str, Any], entry: dict[str, Any]) -> None:
    for ours, theirs in (("loss_recovered", "ce_loss_score"), ("ce_zero", "ce_loss_with_ablation"),
                         ("ce_sae", "ce_loss_with_sae"), ("ce_clean", "ce_loss_without_sae")):
        _put(part, "model_performance_preservation", theirs, s.get(ours))
    _put(part, "model_behavior_preservation", "kl_div_score", s.get("kl_div_score"))
    _put(part, "model_behavior_preservation", "kl_div_with_sae", s.get("kl_div"))
    part.config.update(compute_kl=True, compute_ce_loss=True)
    if isinstance(params.get("batch_size"), int):
        part.config["batch_size_prompts"] = params["batch_size"]


def _probing_values(values: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(values.get("full_probe"), (int, float)):
        out["llm_test_accuracy"] = float(values["full_probe"])
    for k in SAEBENCH_K:
        if isinstance(values.get(f"top{k}"), (int, float)):
            out[f"sae_top_{k}_test_accuracy"] = float(values[f"top{k}"])
    return out


def _probing(part: _Part, s: dict[str, Any], params: dict[str, Any], entry: dict[str, Any]) -> None:
    for name, value in _probing_values(s).items():
        _put(part, "llm" if name.startswith("llm") else "sae", name, value)
    for task, values in sorted((entry.get("details") or {}).items()):
        if isinstance(values, dict) and _probing_values(values):
            part.details.append({"dataset_name": str(task), **_probing_values(values)})
    for ours, theirs in (("seed", "random_seed"), ("tasks", "dataset_names"), ("ctx_len", "context_length"),
                         ("k_values", "k_values")):
        if ours in params:
            part.config[theirs] = params[ours]


def _autointerp(part: _Part, s: dict[str, Any], params: dict[str, Any], entry: dict[str, Any]) -> None:
    _put(part, "autointerp", "autointerp_score", s.get("score"))
    latents = ((entry.get("details") or {}).get("latents")) or []
    per_latent = [float(x["score"]) for x in latents if isinstance(x, dict) and isinstance(x.get("score"), (int, float))]
    if len(per_latent) >= 2:
        _put(part, "autointerp", "autointerp_std_dev", statistics.stdev(per_latent))
    for ours, theirs in (("n_latents", "n_latents"), ("seed", "random_seed"), ("ctx_len", "llm_context_size")):
        if ours in params:
            part.config[theirs] = params[ours]


def _ravel(part: _Part, s: dict[str, Any], params: dict[str, Any], entry: dict[str, Any]) -> None:
    for ours, theirs in (("score", "disentanglement_score"), ("cause", "cause_score"), ("isolation", "isolation_score")):
        _put(part, "ravel", theirs, s.get(ours))
    if "seed" in params:
        part.config["random_seed"] = params["seed"]


#: our metric name -> (SAEBench eval type, mapper)
MAPPING: dict[str, tuple[str, Callable[[_Part, dict[str, Any], dict[str, Any], dict[str, Any]], None]]] = {
    "reconstruction": ("core", _core_reconstruction),
    "loss_recovered": ("core", _core_loss),
    "sparse_probing": ("sparse_probing", _probing),
    "autointerp": ("autointerp", _autointerp),
    "ravel": ("ravel", _ravel),
}


def _checkpoint_cfg(results: Path, key: str) -> dict[str, Any] | None:
    path = results / "checkpoints" / key / "cfg.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _sae_lens_version(cfg: dict[str, Any] | None) -> str | None:
    """Where sae-lens itself looks (``loading/pretrained_sae_loaders.py``): the top level, then
    ``metadata``."""
    if not cfg:
        return None
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    return str(version) if version else None


def record_outputs(record: dict[str, Any], *, mtime_ms: int, sae_cfg: dict[str, Any] | None = None,
                   metric_keys: list[str] | None = None) -> dict[str, EvalOutput]:
    """SAEBench outputs (eval type -> output) of one result record. Only ``ok`` entries of mapped
    metrics count; ``metric_keys`` (``run.json``'s) narrows them to the last run's metrics."""
    from saebench_sanity import __version__

    parts: dict[str, _Part] = {}
    seen: dict[str, str] = {}
    for mkey, entry in sorted((record.get("metrics") or {}).items()):
        name = entry.get("name") or mkey.split(":")[0]
        if name not in MAPPING or entry.get("status") != "ok" or (metric_keys is not None and mkey not in metric_keys):
            continue
        if name in seen:
            raise DataError(f"record {record.get('key')!r} holds two results of metric {name!r} ({seen[name]}, {mkey}); "
                            "export the folder with its run.json (it names the metric keys of the last run)")
        seen[name] = mkey
        eval_type, mapper = MAPPING[name]
        part = parts.setdefault(eval_type, _Part())
        mapper(part, entry.get("scores") or {}, entry.get("params") or {}, entry)
        part.sources[mkey] = {k: entry.get(k) for k in ("name", "params", "scores", "score_order") if k in entry}
    out: dict[str, EvalOutput] = {}
    for eval_type in EVAL_TYPES:
        found = parts.get(eval_type)
        if found is None or not found.metrics:
            continue
        part = found
        key = str(record.get("key"))
        eval_id = uuid.uuid5(_NAMESPACE, f"{key}/{eval_type}/{','.join(sorted(part.sources))}")
        output = EvalOutput(
            eval_type_id=eval_type, eval_config=part.config, eval_id=str(eval_id), datetime_epoch_millis=mtime_ms,
            eval_result_metrics=part.metrics, eval_result_details=part.details,
            eval_result_unstructured={"saebench_sanity": {
                "version": __version__, "key": key, "label": record.get("label"), "cell": record.get("cell"),
                "schema_version": record.get("schema_version", 0), "metrics": part.sources}},
            sae_bench_commit_hash=f"saebench-sanity-{__version__}", sae_lens_id=None, sae_lens_release_id=None,
            sae_lens_version=_sae_lens_version(sae_cfg), sae_cfg_dict=sae_cfg,
        )
        output.check()
        out[eval_type] = output
    return out


@dataclass
class ExportSummary:
    written: list[Path] = field(default_factory=list)
    cells: int = 0
    skipped: list[str] = field(default_factory=list)  # labels of cells with nothing to export, and why


def export(results: str | Path, out: str | Path) -> ExportSummary:
    """Write SAEBench eval-output JSON for every usable record of ``results`` (the cells
    ``run.json`` plans, else every record) under ``out``. Damaged or stale records are a
    ``DataError`` naming the file (as for a leaderboard); a record that is not complete
    (``records.record_problem(complete=True)``) too."""
    from saebench_sanity.harness.store import ResultStore
    from saebench_sanity.io import atomic_write_text, dumps
    from saebench_sanity.paths import safe_name
    from saebench_sanity.records import record_problem

    root, out = Path(results), Path(out)
    store = ResultStore(root)
    if not store.results.is_dir():
        raise DataError(f"no results under {str(root)!r}: it has no results/ folder; pass the output_dir of a `saebench run`")
    run = store.load_run() or {}
    keys = [k for k in (run.get("cell_keys") or store.result_keys()) if isinstance(k, str) and store.result_path(k).is_file()]
    metric_keys = run.get("metric_keys") if isinstance(run.get("metric_keys"), list) else None
    summary = ExportSummary()
    for key in keys:
        rec, why = store.read_result(key)
        path = store.result_path(key)
        if why is None:
            why = record_problem(rec, complete=True)
        if why is not None or rec is None:
            raise DataError(f"{path} {why or 'is missing'}; `saebench verify --results {root}` lists every problem")
        label = str(rec.get("label") or key)
        if rec.get("status") != "ok":
            summary.skipped.append(f"{label}: training {rec.get('status')} ({rec.get('error')})")
            continue
        outputs = record_outputs(rec, mtime_ms=int(path.stat().st_mtime * 1000), sae_cfg=_checkpoint_cfg(root, key),
                                 metric_keys=metric_keys)
        if not outputs:
            summary.skipped.append(f"{label}: no scores of a metric with a SAEBench eval type")
            continue
        summary.cells += 1
        c = rec["cell"]
        stem = safe_name("export file", f"{c['set']}_{c['arch']}_{c['mode']}_s{c['seed']}_{key}")
        for eval_type, output in outputs.items():
            target = out / eval_type / f"{stem}_eval_results.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, dumps(output.model_dump(mode="json")))
            summary.written.append(target)
    logger.info("exported %d file(s) for %d cell(s) to %s", len(summary.written), summary.cells, out)
    return summary
