"""Fingerprint of a stored activation set: statistics that a build on another machine must match
within a tolerance, where its bytes need not.

The float bytes of a harvested set depend on the machine (another CPU's vector kernels change the
last bits of almost every float32 activation), so the set's identity is its recipe
(``store.identity``) and its *numbers* are checked by this fingerprint instead:

* per split (``train``, ``eval``): row count, per-dimension mean ``[d_in]`` and root mean square
  ``[d_in]``, mean squared row norm, and for ``K`` fixed unit projections ``p_j`` the mean and
  root mean square of ``x . p_j``;
* for ``N_ROWS`` eval rows at fixed positions: the row norm and its ``K`` projections (these pin
  single activations, not only their distribution).

Projections are Rademacher vectors ``p_j[i] = +-1 / sqrt(d_in)`` whose signs are the bits of
``sha256("saebench-fingerprint/<j>/<block>")``: defined by a hash, not by an RNG whose stream may
change between library versions or CPUs. Sums run in float64.

``compare`` checks two fingerprints: every statistic may differ by at most ``rtol`` times its
scale, the scale being the statistic's natural size (a dimension's rms for its mean and rms, a
projection's rms for its mean and rms, the row's norm for a row's projections and norm, the
statistic itself for a mean squared norm). One message per failing statistic group names the
number of entries out of tolerance and the worst one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

FINGERPRINT_FORMAT = "saebench-fingerprint/1"
#: Fixed unit projections per fingerprint.
K = 8
#: Eval rows whose projections are stored.
N_ROWS = 32
#: Default tolerance of ``compare``: 1e-4 of each statistic's scale. Builds with other CPU kernels
#: deviate by up to 6.4e-6 of it (scripts/activation-float-differences.py, docs/real-activations.md);
#: a 1% change of the activations is 100x above it.
DEFAULT_RTOL = 1e-4


def projections(d_in: int, k: int = K) -> Any:
    """``[d_in, k]`` float64 Rademacher projections with unit columns (see module doc)."""
    import numpy as np
    import torch

    cols = []
    for j in range(k):
        need, block, bits = d_in, 0, []
        while need > 0:
            digest = hashlib.sha256(f"saebench-fingerprint/{j}/{block}".encode()).digest()
            b = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))[:need]
            bits.append(b)
            need -= b.size
            block += 1
        cols.append(np.concatenate(bits).astype(np.float64) * 2.0 - 1.0)
    return torch.from_numpy(np.stack(cols, axis=1) / math.sqrt(d_in))


class Moments:
    """Running float64 sums over rows ``[n, d_in]`` (fed shard by shard)."""

    def __init__(self, d_in: int, proj: Any) -> None:
        import torch

        self.n = 0
        self.sum = torch.zeros(d_in, dtype=torch.float64)
        self.sumsq = torch.zeros(d_in, dtype=torch.float64)
        self.proj = proj
        self.psum = torch.zeros(proj.shape[1], dtype=torch.float64)
        self.psumsq = torch.zeros(proj.shape[1], dtype=torch.float64)

    def add(self, rows: Any) -> None:
        import torch

        x = rows.to(torch.float64)
        self.n += int(x.shape[0])
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)
        px = x @ self.proj
        self.psum += px.sum(0)
        self.psumsq += (px * px).sum(0)

    def summary(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {"rows": self.n,
                "mean": (self.sum / n).tolist(),
                "rms": (self.sumsq / n).sqrt().tolist(),
                "mean_sq_norm": float(self.sumsq.sum() / n),
                "proj_mean": (self.psum / n).tolist(),
                "proj_rms": (self.psumsq / n).sqrt().tolist()}


def row_positions(n_rows: int, n: int = N_ROWS) -> list[int]:
    """``n`` evenly spaced row indices in ``[0, n_rows)`` (all rows if fewer)."""
    if n_rows <= n:
        return list(range(n_rows))
    return sorted({round(i * (n_rows - 1) / (n - 1)) for i in range(n)})


def compute(train_shards: Iterable[Any], eval_rows: Any) -> dict[str, Any]:
    """Fingerprint statistics of a set.

    Args:
        train_shards: the training activations, one ``[rows, d_in]`` tensor per shard in manifest order.
        eval_rows: the eval activations ``[n_eval, d_in]``.
    Returns:
        ``{"format", "projection", "train", "eval", "eval_rows"}`` (JSON-ready; no identity:
        ``store`` adds it).
    """
    import torch

    d_in = int(eval_rows.shape[1])
    proj = projections(d_in)
    train = Moments(d_in, proj)
    for rows in train_shards:
        train.add(rows)
    ev = Moments(d_in, proj)
    ev.add(eval_rows)
    idx = row_positions(int(eval_rows.shape[0]))
    picked = eval_rows[torch.tensor(idx, dtype=torch.int64)].to(torch.float64)
    return {
        "format": FINGERPRINT_FORMAT,
        "projection": {"kind": "rademacher", "k": K, "seed": "sha256('saebench-fingerprint/<j>/<block>') bits",
                       "scale": "1/sqrt(d_in)"},
        "d_in": d_in,
        "train": train.summary(),
        "eval": ev.summary(),
        "eval_rows": {"index": idx, "norm": picked.norm(dim=1).tolist(), "proj": (picked @ proj).tolist()},
    }


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 20 else s[:16] + "..."


def _group(label: str, stored: list[float], fresh: list[float], scale: list[float], what: str) -> dict[str, Any]:
    """Deviations ``|fresh - stored| / scale`` of one statistic group."""
    devs = [abs(b - a) / s if s > 0 else (0.0 if a == b else math.inf) for a, b, s in zip(stored, fresh, scale)]
    return {"label": label, "what": what, "stored": stored, "fresh": fresh, "dev": devs}


def _groups(stored: dict[str, Any], fresh: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(structural mismatches, statistic groups to check against a tolerance)."""
    out: list[str] = []
    groups: list[dict[str, Any]] = []
    if stored.get("format") != fresh.get("format"):
        return [f"fingerprint format {stored.get('format')!r} (stored) vs {fresh.get('format')!r} (this build): "
                f"export the stored one again with this version"], groups
    if stored.get("identity_sha256") != fresh.get("identity_sha256"):
        a, b = _flat(stored.get("recipe") or {}), _flat(fresh.get("recipe") or {})
        diffs = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        out.append(f"identity: {str(stored.get('identity_sha256'))[:16]} (stored) vs "
                   f"{str(fresh.get('identity_sha256'))[:16]} (this build): the recipe differs")
        out += [f"recipe {k}: {_short(a.get(k))} (stored) vs {_short(b.get(k))} (this build)" for k in diffs]
    if stored.get("d_in") != fresh.get("d_in"):
        return out + [f"d_in: {stored.get('d_in')} (stored) vs {fresh.get('d_in')} (this build)"], groups
    for split in ("train", "eval"):
        s, f = stored[split], fresh[split]
        if s["rows"] != f["rows"]:
            out.append(f"{split} rows: {s['rows']} (stored) vs {f['rows']} (this build)")
            continue
        floor = 1e-6 * math.sqrt(s["mean_sq_norm"] / max(len(s["rms"]), 1))  # a dead dimension must stay ~0
        dim_scale = [max(r, floor) for r in s["rms"]]
        proj_scale = [max(r, floor) for r in s["proj_rms"]]
        groups += [
            _group(f"{split} per-dim mean", s["mean"], f["mean"], dim_scale, "the dim's rms"),
            _group(f"{split} per-dim rms", s["rms"], f["rms"], dim_scale, "the dim's rms"),
            _group(f"{split} mean squared norm", [s["mean_sq_norm"]], [f["mean_sq_norm"]], [s["mean_sq_norm"]], "itself"),
            _group(f"{split} projection mean", s["proj_mean"], f["proj_mean"], proj_scale, "the projection's rms"),
            _group(f"{split} projection rms", s["proj_rms"], f["proj_rms"], proj_scale, "the projection's rms"),
        ]
    sr, fr = stored["eval_rows"], fresh["eval_rows"]
    if sr["index"] != fr["index"]:
        out.append(f"eval rows: sampled positions differ ({len(sr['index'])} stored vs {len(fr['index'])} in this build)")
    else:
        norms = sr["norm"]
        k = len(sr["proj"][0]) if sr["proj"] else 0
        groups += [
            _group("eval row norms", norms, fr["norm"], norms, "the row's norm"),
            _group("eval row projections", [v for row in sr["proj"] for v in row], [v for row in fr["proj"] for v in row],
                   [n for n in norms for _ in range(k)], "the row's norm"),
        ]
    return out, groups


def compare(stored: dict[str, Any], fresh: dict[str, Any], rtol: float = DEFAULT_RTOL) -> list[str]:
    """Mismatches between a stored fingerprint and a fresh one, one line each (empty = match).

    Both are ``store.fingerprint(...)`` dicts (``compute`` plus ``set``, ``identity_sha256`` and
    ``recipe``). A different recipe is listed field by field (the statistics are still compared
    when the shapes agree); shapes (rows, d_in) must be equal; every statistic must be within
    ``rtol`` of its scale (module doc): one line per statistic group with entries outside it,
    naming how many and the worst."""
    out, groups = _groups(stored, fresh)
    for g in groups:
        bad = [i for i, d in enumerate(g["dev"]) if d > rtol]
        if not bad:
            continue
        w = max(range(len(g["dev"])), key=g["dev"].__getitem__)
        out.append(f"{g['label']}: {len(bad)} of {len(g['dev'])} differ by more than {rtol:g} x {g['what']} "
                   f"(worst [{w}]: stored {g['stored'][w]:.7g}, this build {g['fresh'][w]:.7g}, "
                   f"{g['dev'][w]:.2g} x {g['what']})")
    return out


def max_deviation(stored: dict[str, Any], fresh: dict[str, Any]) -> dict[str, float]:
    """The largest deviation of each statistic group in units of its scale (for measuring
    tolerances: the two match at any ``rtol`` above the largest value)."""
    _, groups = _groups(stored, fresh)
    return {g["label"]: max(g["dev"], default=0.0) for g in groups}
