"""Model loading, hook points, recording and splicing on a tiny random Llama saved locally."""

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.errors import DataError  # noqa: E402
from saebench_sanity.models import hook_points as hp  # noqa: E402
from saebench_sanity.models.loading import load_causal_lm  # noqa: E402
from saebench_sanity.models.tiny import save_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = save_tiny_llama(tmp_path_factory.mktemp("m") / "tiny-llama", hidden=32, layers=3)
    model, tok, info = load_causal_lm(folder)
    return folder, model, tok, info


def test_local_folder_loads_with_weight_hash_identity(tiny, tmp_path):
    folder, model, tok, info = tiny
    assert info["source"] == "local" and info["id"] == "tiny-llama"
    assert info["n_layers"] == 3 and info["d_model"] == 32 and len(info["sha256"]) == 64
    # the same weights under another path have the same identity
    import shutil

    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    assert load_causal_lm(copy)[2]["sha256"] == info["sha256"]
    assert not model.training


def test_missing_folder_and_unreachable_hub_id_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    with pytest.raises(DataError, match="offline") as err:
        load_causal_lm("saebench-no-such-org/no-such-model", local_files_only=True)
    assert "\n" not in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="cannot load model from folder"):
        load_causal_lm(empty)


def test_hook_point_names_resolve_and_missing_ones_list_valid_names(tiny):
    _, model, _, _ = tiny
    names = hp.valid_hook_points(model)
    assert {"resid_post.0", "mlp_out.2", "attn_out.1"} <= set(names) and "resid_post.3" not in names
    with pytest.raises(DataError, match=r"has 3 layers; valid: resid_post.L.*0\.\.2"):
        hp.resolve_hook_point(model, "resid_post.7")
    with pytest.raises(DataError, match="not a valid name"):
        hp.resolve_hook_point(model, "blocks.1.hook_resid_post")


def test_recorded_resid_post_equals_hidden_states_and_mlp_out_equals_module_output(tiny):
    _, model, _, _ = tiny
    ids = torch.randint(3, 300, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in (0, 1):  # hidden_states[L + 1] is the output of layer L (the last one is normed)
        got = hp.record(model, f"resid_post.{layer}", ids, batch_size=2)
        assert got.shape == (3, 10, 32)
        torch.testing.assert_close(got, hidden[layer + 1])
    full = hp.record(model, "resid_post.1", ids, batch_size=3, stop_early=False)
    torch.testing.assert_close(full, hp.record(model, "resid_post.1", ids, batch_size=1))
    captured = []
    h = model.model.layers[2].mlp.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model(input_ids=ids)
    h.remove()
    torch.testing.assert_close(hp.record(model, "mlp_out.2", ids), captured[0])
    assert hp.record(model, "attn_out.0", ids).shape == (3, 10, 32)


def test_splice_identity_keeps_logits_and_replacement_changes_them(tiny):
    _, model, _, _ = tiny
    ids = torch.randint(3, 300, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with hp.splice(model, "resid_post.1", lambda x: x.clone()):
            same = model(input_ids=ids).logits
        with hp.splice(model, "attn_out.1", lambda x: x * 0):
            changed = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    torch.testing.assert_close(same, clean)
    assert not torch.allclose(changed, clean)
    torch.testing.assert_close(after, clean)  # hook removed on exit
    with pytest.raises(DataError, match="must keep"), torch.no_grad():
        with hp.splice(model, "resid_post.0", lambda x: x[:, :1]):
            model(input_ids=ids)


def test_loading_writes_no_weight_loading_bar_and_leaves_the_switch_as_it_was(tiny, capfd):
    """Each pool worker loads the model once; transformers' "Loading weights" bar, written from the
    worker, broke into the run's progress display. It is off while loading, and restored after."""
    from transformers.utils import logging as hf_logging

    folder = tiny[0]
    capfd.readouterr()
    hf_logging.enable_progress_bar()
    load_causal_lm(folder)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        load_causal_lm(folder)
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
