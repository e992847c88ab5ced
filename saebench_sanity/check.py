"""``saebench check``: does *your* SAE beat the study's random baselines?

Takes an SAE in the SAELens on-disk format (a local folder, or a SAELens pretrained release +
id when online), an activation set whose ``d_in`` matches, trains the random baselines with the
same architecture, size and sparsity on that set, scores everything on the same held-out data
with the chosen metrics and applies the leaderboard's verdict rule (``leaderboard.verdict``),
with the user's SAE as one fixed value (``fixed_trained``: a one-sample t interval over the
baselines' seeds, which need at least ``min_seeds``).

Exit status (see ``cli_check``): 0 when the SAE BEATS every baseline on every chosen score with a
direction, 1 otherwise (``CheckReport.outcome`` says whether some score FAILS, the verdicts are
mixed or inconclusive, or no score could be judged), 2 on bad input.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from saebench_sanity.errors import ConfigError, DataError

@dataclass
class CheckOptions:
    target: str
    set_name: str
    sae_id: str | None = None
    metrics: tuple[str, ...] | None = None      # "metric" or "metric.score" selectors; None = all
    modes: tuple[str, ...] | None = None      # baselines; None = every is_baseline mode
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int | None = None
    min_effect: float = 0.01
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"--confidence = {self.confidence!r} must be in [0.5, 1), e.g. 0.95")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError("--seeds must list non-negative integers, e.g. --seeds 0,1,2")
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

    def to_dict(self) -> dict[str, Any]:
        return {"sae": self.sae, "set": self.set_name, "architecture": self.architecture,
                "baselines": self.baselines, "passed": self.passed, "outcome": self.outcome,
                "scores": self.rows, "skipped": self.skipped}


def load_user_sae(target: str, sae_id: str | None = None) -> tuple[Any, str]:
    """``(sae_lens SAE, description)`` from a local SAELens folder, or a pretrained release+id."""
    from saebench_sanity.architectures.checkpoint import load_checkpoint

    path = Path(target)
    if path.exists():
        return load_checkpoint(path), str(path)
    if sae_id is None:
        raise DataError(f"{target!r} is not a folder; pass an SAELens SAE folder, or a SAELens release with --sae-id ID")
    from sae_lens import SAE

    try:  # the real hub path: users have internet (not exercised offline)
        return SAE.from_pretrained(target, sae_id, device="cpu"), f"{target}/{sae_id}"
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).splitlines() or [""])[0]
        raise DataError(f"could not load SAELens release {target!r} id {sae_id!r} ({type(exc).__name__}: {first}); "
                        "check the names, or download it and pass the folder") from None


def architecture_of(sae: Any, registry: Any) -> Any:
    """The registered architecture a loaded SAE was trained as (SAELens records it in metadata)."""
    meta = getattr(sae.cfg, "metadata", None)
    trained_as = getattr(meta, "training_architecture", None) if meta is not None else None
    inference = sae.cfg.architecture()
    for name in (trained_as, inference):
        for spec in registry.items["architecture"].values():
            if name and spec.sae_lens_architecture == name:
                return spec
    raise DataError(f"SAE architecture {trained_as or inference!r} has no registered saebench architecture; "
                    f"known: {', '.join(sorted(registry.items['architecture']))}")


def _measured_l0(sae: Any, acts: Any) -> float:
    import torch

    with torch.no_grad():
        return float((sae.encode(acts[:4096]) != 0).float().sum(-1).mean())


def _sparsity_of(sae: Any, arch: Any, acts: Any) -> tuple[int | None, dict[str, Any]]:
    """``(target_l0, arch_overrides)`` that give the baselines the user's sparsity."""
    details = getattr(getattr(sae.cfg, "metadata", None), "training_architecture_details", None) or {}
    params: dict[str, Any] = {}
    for key in (arch.sparsity_param, "l1_coefficient", "l0_coefficient"):
        if key and key in details and key != "k":
            params[key] = details[key]
    k = details.get("k", getattr(sae.cfg, "k", None))
    if k is not None:
        return int(round(float(k))), params
    l0 = _measured_l0(sae, acts)
    return (max(1, int(round(l0))) if math.isfinite(l0) and l0 > 0 else None), params


def _score(spec: Any, sae: Any, aset: Any, eval_acts: Any, params: dict[str, Any]) -> dict[str, float]:
    from saebench_sanity.metrics.base import MetricContext

    sae.eval()
    return spec.compute(MetricContext(sae, aset, eval_acts), **params)


def run_check(opts: CheckOptions, registry: Any, progress: Callable[[str], None] | None = None) -> CheckReport:
    from saebench_sanity import config as config_mod
    from saebench_sanity.architectures.checkpoint import load_checkpoint, save_checkpoint
    from saebench_sanity.architectures.sparsity import targets_l0
    from saebench_sanity.leaderboard.verdict import MIN_SEEDS, Stats, judge
    from saebench_sanity.training.cohort import train_cells

    say = progress or (lambda _msg: None)
    set_spec = registry.get("activation_set", opts.set_name)
    wanted_scores: dict[str, set[str] | None] = {}
    for selector in opts.metrics or registry.names("metric"):
        metric, _, score = selector.partition(".")
        spec = registry.get("metric", metric)
        if score and score not in spec.scores:
            raise ConfigError(f"--metrics: metric {metric!r} has no score {score!r}; its scores: {', '.join(sorted(spec.scores))}")
        if score:
            if wanted_scores.get(metric, set()) is not None:
                wanted_scores.setdefault(metric, set()).add(score)
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

    sae, description = load_user_sae(opts.target, opts.sae_id)
    if set_spec.d_in is not None and int(set_spec.d_in) != int(sae.cfg.d_in):
        raise DataError(f"SAE d_in {sae.cfg.d_in} does not match activation set {opts.set_name!r} (d_in {set_spec.d_in}); "
                        "choose a set harvested at the SAE's model and hook point")
    say(f"loaded {description} ({sae.cfg.architecture()}, d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae})")
    arch = architecture_of(sae, registry)
    aset = set_spec.build()
    if int(aset.d_in) != int(sae.cfg.d_in):
        raise DataError(f"SAE d_in {sae.cfg.d_in} does not match activation set {opts.set_name!r} (d_in {aset.d_in}); "
                        "choose a set harvested at the SAE's model and hook point")
    eval_acts = aset.eval_activations()
    target_l0, arch_overrides = _sparsity_of(sae, arch, eval_acts)
    run_cfg = config_mod.from_dict({"run": {"sets": [opts.set_name], "architectures": [arch.name], "modes": ["trained"]}})
    training = run_cfg.training_for(opts.set_name, set_spec.training)
    if opts.steps is not None:
        import dataclasses

        training = dataclasses.replace(training, steps=opts.steps,
                                       lr_warm_up_steps=min(training.lr_warm_up_steps, opts.steps // 2),
                                       lr_decay_steps=min(training.lr_decay_steps, opts.steps // 2),
                                       sparsity_warm_up_steps=min(training.sparsity_warm_up_steps, opts.steps))

    report = CheckReport(sae={"source": description, "architecture": arch.name, "d_in": int(sae.cfg.d_in),
                              "d_sae": int(sae.cfg.d_sae), "target_l0": target_l0},
                         set_name=opts.set_name, architecture=arch.name, baselines=mode_names)
    applicable = []
    for spec in metric_specs:
        missing = set(spec.needs) - set(aset.provides)
        if missing:
            report.skipped[spec.name] = f"activation set {opts.set_name!r} does not provide {', '.join(sorted(missing))}"
        else:
            applicable.append(spec)
    if not applicable:
        raise ConfigError(f"no chosen metric applies to activation set {opts.set_name!r}: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))

    user_scores = {spec.name: _score(spec, sae, aset, eval_acts, {}) for spec in applicable}
    base_scores: dict[str, list[tuple[dict[str, dict[str, float]], bool]]] = {m.name: [] for m in modes}
    base_l0: dict[str, list[float]] = {m.name: [] for m in modes}
    controlled = False
    with tempfile.TemporaryDirectory() as tmp:
        for seed in opts.seeds:
            # the baselines of one seed are one cohort: identical batches, one batched program
            say(f"training baselines {', '.join(m.name for m in modes)} seed {seed} (at most {training.max_steps} steps)")
            results = train_cells([(arch, mode, {}, seed) for mode in modes], aset, d_sae=int(sae.cfg.d_sae),
                                  target_l0=target_l0, arch_overrides=arch_overrides, training=training)
            for mode, res in zip(modes, results):
                if isinstance(res, BaseException):
                    raise res
                controlled = controlled or "l0_control" in (res.convergence or {})
                folder = Path(tmp) / f"{mode.name}-{seed}"
                save_checkpoint(res.sae, folder, calibration_acts=eval_acts)
                inference = load_checkpoint(folder)
                scores = {spec.name: _score(spec, inference, aset, eval_acts, {}) for spec in applicable}
                base_scores[mode.name].append((scores, bool(res.converged)))
                base_l0[mode.name].append(_final_l0(scores, res.l0_train))

    # the L0 step of the rule: for architectures whose sparsity targets an L0, and for penalty SAEs
    # whose baselines were steered to the user's L0 (training.match_l0)
    l0_target = (float(target_l0) if target_l0 is not None
                 and (controlled or targets_l0(arch.name, arch.sparsity_param)) else None)
    user_l0 = _final_l0(user_scores, math.nan)
    if not math.isfinite(user_l0):
        user_l0 = _measured_l0(sae, eval_acts)
    report.sae["l0"] = user_l0
    for spec in applicable:
        for score, info in spec.scores.items():
            if wanted_scores[spec.name] is not None and score not in wanted_scores[spec.name]:
                continue
            user = Stats.of([user_scores[spec.name][score]], l0=user_l0)
            per_mode = {m: Stats.of([s[spec.name][score] for s, _ in runs], [c for _, c in runs],
                                    l0=_mean_or_none(base_l0[m]))
                        for m, runs in base_scores.items()}
            min_effect = opts.min_effect if info.min_effect is None else info.min_effect
            v = judge(user, per_mode, info.direction, min_effect, opts.confidence, min_seeds=MIN_SEEDS,
                      chance=info.chance, target_l0=l0_target, fixed_trained=True)
            report.rows.append({
                "metric": spec.name, "score": score, "direction": info.direction, "chance": info.chance,
                "sae": user.mean, "baselines": {m: {"mean": s.mean, "sd": s.sd, "n": s.n, "converged": s.converged,
                                                    "l0": s.l0} for m, s in per_mode.items()},
                "baseline": v.baseline, "diff": v.diff, "lower": v.lower, "upper": v.upper, "verdict": v.label,
                "fails_vs": list(v.fails_vs),
                "comparisons": {b: {"d": c.d, "se": c.se, "df": c.df, "lower": c.lower, "upper": c.upper}
                                for b, c in v.comparisons.items()},
            })
    return report


def _final_l0(scores: dict[str, dict[str, float]], fallback: float) -> float:
    """The ``reconstruction.l0`` score when it was computed, else ``fallback`` (latents per sample)."""
    value = (scores.get("reconstruction") or {}).get("l0")
    return float(value) if value is not None and math.isfinite(float(value)) else float(fallback)


def _mean_or_none(values: list[float]) -> float | None:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None
