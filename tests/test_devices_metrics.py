"""Scoring on a chosen device: every metric with ``device="cpu"`` passed explicitly gives the
numbers of the default context and of independent computations, the language model is not
copied on the CPU, results record the scoring device and dtype, a bad ``--device`` exits 2 with
one line for run / check / activations build, and (with CUDA only) the metric path on the GPU
agrees with the CPU within float tolerance."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.metrics.base import MetricContext  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
D_IN, D_SAE = 16, 32


class TinySAE(torch.nn.Module):
    """A ReLU SAE with sae-lens's parameter names and layout (``W_dec`` ``[d_sae, d_in]``)."""

    def __init__(self, seed: int = 0, d_in: int = D_IN) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, D_SAE, generator=g))
        self.b_enc = torch.nn.Parameter(torch.full((D_SAE,), -1.0))
        self.W_dec = torch.nn.Parameter(torch.randn(D_SAE, d_in, generator=g) / 4)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.cfg = SimpleNamespace(metadata=None)

    def encode(self, x):  # unit-norm inputs: latents fire on some tokens whatever the model's scale
        x = x - self.b_dec
        return torch.relu(x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6) @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec


class _ModelSet:
    """An activation set with a language model resource (what ``RealActivationSet`` serves)."""

    name, d_in = "tiny-model-set", D_IN

    def __init__(self, handle, truth=None) -> None:
        self.handle, self.ground_truth = handle, truth

    def manifest_hash(self):
        return self.name

    def resource(self, need):
        if need != "model":
            raise KeyError(need)
        return self.handle


@pytest.fixture(scope="module")
def world():
    from saebench_sanity.activations.reader import Normalizer
    from saebench_sanity.activations.real import ModelHandle
    from saebench_sanity.judges.local import tiny_random_lm

    torch.set_num_threads(1)
    model, tok = tiny_random_lm(seed=0, d_model=D_IN)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, len(tok), (12, 12), generator=g)
    ids[:, 0] = tok.bos_token_id
    handle = ModelHandle(model=model, tokenizer=tok, hook_point="resid_post.0", eval_contexts=ids,
                         excluded_token_ids=[tok.bos_token_id], normalizer=Normalizer(0.5),
                         mean_activation=None)
    truth = SimpleNamespace(features=torch.randn(8, D_IN, generator=g))
    acts = torch.randn(300, D_IN, generator=g)
    return SimpleNamespace(model=model, tok=tok, handle=handle, aset=_ModelSet(handle, truth), acts=acts)


def _judge():
    from saebench_sanity.judges.base import CallableJudge

    def answer(messages, max_tokens):
        text = messages[-1]["content"]
        return "tokens" if "Explanation of the feature" in text else ("1, 3" if "def" in text else "2")

    return CallableJudge(answer, model="fixed")


def all_scores(world, sae, **ctx_kw):
    """Every built-in metric's factory on one SAE (``ctx_kw``: e.g. ``device="cpu"``)."""
    from saebench_sanity.metrics import autointerp, core_adapters, loss_recovered, probing, ravel
    from saebench_sanity.probing_tasks.base import make_task

    ctx = MetricContext(sae, world.aset, world.acts, judge=_judge(), **ctx_kw)
    out = {"reconstruction": core_adapters.reconstruction_scores(ctx),
           "reconstruction_bulk": core_adapters.reconstruction_bulk_scores(ctx, max_norm_ratio=1.5),
           "ground_truth": core_adapters.ground_truth_scores(ctx, cos_threshold=0.3),
           "loss_recovered": loss_recovered.loss_recovered_scores(ctx, n_contexts=8, batch_size=4)}
    lm = probing.lm_handle(ctx)
    ex = [(f"def f{i}(x): return x + {i}", "py") for i in range(24)] + [(f"int g{i}(void) {{ return {i}; }}", "c")
                                                                         for i in range(24)]
    task = make_task("device-task", ex, n_train=16, n_test=8)
    out["sparse_probing"] = probing.probing_scores_for_task(lm.sae_in_model_space(ctx.sae), lm, task, (1, 4), 16, 0)
    out["autointerp"] = autointerp.autointerp_scores(ctx, n_latents=3, n_explain=2, n_activating=2, n_random=2,
                                                     ctx_len=6, n_contexts=24)
    # RAVEL's edit and latent selection (its prompts need a model that knows capitals: the slow test)
    x = world.acts[:12]
    z = lm.sae_in_model_space(ctx.sae).encode(x.to(ctx.device))
    labels = [str(i % 3) for i in range(12)]
    lat = ravel.select_attribute_latents(z, labels, [str(i % 2) for i in range(12)], 4)
    patched = ravel.patched_vector(ctx.sae, x[:6], ctx.sae.encode(x[6:].to(ctx.device)), lat)
    out["ravel"] = {"latents": lat, "patched": patched.double().sum().item(), "patched_device": str(patched.device)}
    return out, ctx


def test_every_metric_with_device_cpu_gives_the_default_contexts_numbers_bit_for_bit(world):
    from saebench_sanity.metrics import reconstruction as rec

    explicit, ctx = all_scores(world, TinySAE(), device="cpu")
    default, _ = all_scores(world, TinySAE())
    assert explicit == default  # exact: CPU scoring runs the very same operations
    assert ctx.device == "cpu" and ctx.dtype == "float32"
    # ... and the numbers are the formulas' (independent of the context's device plumbing)
    sae = TinySAE()
    with torch.no_grad():
        x64 = world.acts.double()
        h64 = sae.decode(sae.encode(world.acts)).double()
    ev = 1 - ((x64 - h64) ** 2).sum(1).mean() / ((x64 - x64.mean(0)) ** 2).sum(1).mean()
    assert explicit["reconstruction"]["explained_variance"] == pytest.approx(float(ev), abs=1e-12)
    assert explicit["reconstruction"]["l0"] == pytest.approx(rec.l0(sae.encode(world.acts).detach()), abs=0)
    assert explicit["ravel"]["patched_device"] == "cpu"
    assert set(explicit["autointerp"]) == {"score", "parse_failure_rate"}


def test_cpu_scoring_uses_the_sets_own_model_object(world):
    from saebench_sanity.devices import model_on

    ctx = MetricContext(TinySAE(), world.aset, world.acts, device="cpu")
    assert ctx.resource("model") is world.handle and model_on(world.model, "cpu") is world.model


def test_another_device_gets_one_copy_of_the_model_shared_with_the_local_judge(world):
    """torch's ``meta`` device stands in for a GPU: the copy is made and moved, no number computed."""
    from saebench_sanity.devices import module_device
    from saebench_sanity.judges.local import LocalJudge

    ctx = MetricContext(TinySAE(), world.aset, world.acts, device="meta")
    first, second = ctx.resource("model"), ctx.resource("model")
    assert first.model is second.model and first.model is not world.model
    assert module_device(first.model).type == "meta" and module_device(world.model).type == "cpu"
    assert world.handle.model is world.model and first.eval_contexts is world.handle.eval_contexts
    judge = LocalJudge(loaded=(world.model, world.tok))
    judge.use_device("meta")
    assert judge._model()[0] is first.model


def test_run_cell_loads_the_checkpoint_on_the_device_and_records_device_and_dtype(tmp_path, monkeypatch):
    from conftest import FakePlugin

    from saebench_sanity import config
    from saebench_sanity.architectures import checkpoint
    from saebench_sanity.harness import executor
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.harness.store import ResultStore
    from saebench_sanity.registry import Registry

    asked = []

    def load(path, device="cpu"):
        asked.append(device)
        return TinySAE(d_in=8)  # tiny-gauss's width

    monkeypatch.setattr(checkpoint, "load_checkpoint", load)  # no training, no sae-lens import
    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin()])
    cfg = config.from_dict({"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained"],
                                    "seeds": [0], "metrics": ["reconstruction"], "output_dir": str(tmp_path)},
                            "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}})
    plan = build_plan(cfg, reg)
    store = ResultStore(cfg.output_dir)
    cell, aset = plan.cells[0], plan.sets["tiny-gauss"]
    info = {"steps": 0, "seconds": 0.0, "converged": True, "device": "cpu", "dtype": "float32"}
    out = executor.run_cell(cell, plan.metrics, aset, aset.eval_activations, store, reg, trained=info, device="cpu")
    record = json.loads(store.result_path(cell.key).read_text())
    entry = record["metrics"][plan.metrics[0].key]
    assert out.status == "ok" and entry["status"] == "ok" and asked == ["cpu"]
    assert (entry["device"], entry["dtype"]) == ("cpu", "float32")
    assert (record["training"]["device"], record["training"]["dtype"]) == ("cpu", "float32")
    # a checkpoint trained before devices were recorded keeps its record's training block as it was
    assert "device" not in executor._training_summary({"steps": 1})


@pytest.mark.parametrize("device, says", [("gpu", "is not a device"), ("cuda:7", "not available on this machine")])
@pytest.mark.parametrize("argv", [["run", "--quick", "--out"], ["check", "/nonexistent-sae"], ["activations", "build"]])
def test_a_bad_device_exits_2_with_one_line_naming_the_option(argv, device, says, capsys, tmp_path):
    from saebench_sanity.cli import main

    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    argv = [*argv, str(tmp_path / "out")] if argv[-1] == "--out" else argv
    assert main([*argv, "--device", device]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]  # config notes
    assert len(err) == 1 and "--device" in err[0] and says in err[0] and "cpu" in err[0]


def test_a_dtype_the_device_cannot_do_exits_2_with_one_line(capsys):
    from saebench_sanity.cli import main

    assert main(["check", "/nonexistent-sae", "--device", "cpu", "--dtype", "float16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype" in err[0] and "float32" in err[0]


@CUDA
def test_metrics_on_cuda_agree_with_the_cpu(world):
    from saebench_sanity.devices import model_on, module_device

    cpu, _ = all_scores(world, TinySAE(), device="cpu")
    gpu, ctx = all_scores(world, TinySAE().to("cuda"), device="cuda:0")
    assert module_device(ctx.sae).type == "cuda" and module_device(ctx.resource("model").model).type == "cuda"
    assert module_device(world.model).type == "cpu"  # the set's own copy stays where it was
    assert model_on(world.model, "cuda") is ctx.resource("model").model  # moved once per (model, device)
    for metric in ("reconstruction", "reconstruction_bulk", "ground_truth", "loss_recovered", "sparse_probing"):
        for score, value in cpu[metric].items():
            assert gpu[metric][score] == pytest.approx(value, rel=1e-4, abs=1e-5), (metric, score)
    assert gpu["ravel"]["patched"] == pytest.approx(cpu["ravel"]["patched"], rel=1e-4)
    assert 0.0 <= gpu["autointerp"]["score"] <= 1.0


@CUDA
def test_checkpoint_and_local_judge_on_cuda(tmp_path, world):
    from saebench_sanity.architectures.checkpoint import load_checkpoint
    from saebench_sanity.judges.local import LocalJudge

    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    sae.save_model(tmp_path)
    on_gpu = load_checkpoint(tmp_path, device="cuda")
    assert on_gpu.W_dec.device.type == "cuda" and torch.allclose(on_gpu.W_dec.cpu(), sae.W_dec)
    judge = LocalJudge(loaded=(world.model, world.tok))
    judge.use_device("cuda:0")
    prompts = [[{"role": "user", "content": f"Is {i} a number?"}] for i in range(3)]
    on_cuda = judge.yes_logodds(prompts)
    assert on_cuda == pytest.approx(LocalJudge(loaded=(world.model, world.tok)).yes_logodds(prompts), abs=1e-4)
