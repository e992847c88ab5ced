"""`saebench export --format saebench`: SAEBench eval-output JSON whose field names and nesting are
SAEBench's (written out below from its eval_output.py / eval_config.py files, independently of the
exporter's models) and whose numbers are the recorded ones."""

import glob
import json
import shutil
import uuid
from pathlib import Path

import pytest

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore

REPO = Path(__file__).resolve().parents[1]

#: SAEBench's BaseEvalOutput fields (sae_bench/evals/base_eval_output.py)
TOP = {"eval_type_id", "eval_config", "eval_id", "datetime_epoch_millis", "eval_result_metrics",
       "eval_result_details", "eval_result_unstructured", "sae_bench_commit_hash", "sae_lens_id",
       "sae_lens_release_id", "sae_lens_version", "sae_cfg_dict"}
_PROBE = [f"{p}_test_accuracy" for p in ("llm", "sae")] + [f"{p}_top_{k}_test_accuracy" for p in ("llm", "sae")
                                                          for k in (1, 2, 5, 10, 20, 50, 100)]
#: eval type -> metric category -> its fields (sae_bench/evals/<type>/eval_output.py)
METRICS = {
    "core": {
        "model_behavior_preservation": {"kl_div_score", "kl_div_with_ablation", "kl_div_with_sae"},
        "model_performance_preservation": {"ce_loss_score", "ce_loss_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae"},
        "reconstruction_quality": {"explained_variance", "explained_variance_legacy", "mse", "cossim"},
        "shrinkage": {"l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias"},
        "sparsity": {"l0", "l1"},
        "token_stats": {"total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"},
        "misc_metrics": {"freq_over_1_percent", "freq_over_10_percent", "normalized_freq_over_1_percent",
                         "normalized_freq_over_10_percent", "average_max_encoder_cosine_sim",
                         "average_max_decoder_cosine_sim", "frac_alive"},
    },
    "sparse_probing": {"llm": {n for n in _PROBE if n.startswith("llm")}, "sae": {n for n in _PROBE if n.startswith("sae")}},
    "autointerp": {"autointerp": {"autointerp_score", "autointerp_std_dev"}},
    "ravel": {"ravel": {"disentanglement_score", "cause_score", "isolation_score"}},
}
#: eval type -> its config's fields (sae_bench/evals/<type>/eval_config.py)
CONFIG = {
    "core": {"model_name", "llm_dtype", "batch_size_prompts", "n_eval_reconstruction_batches",
             "n_eval_sparsity_variance_batches", "dataset", "context_size", "compute_kl", "compute_ce_loss",
             "compute_sparsity_metrics", "compute_variance_metrics", "compute_featurewise_density_statistics",
             "compute_featurewise_weight_based_metrics", "exclude_special_tokens_from_reconstruction", "verbose"},
    "sparse_probing": {"random_seed", "dataset_names", "probe_train_set_size", "probe_test_set_size", "context_length",
                       "sae_batch_size", "llm_batch_size", "llm_dtype", "model_name", "k_values", "lower_vram_usage"},
    "autointerp": {"model_name", "n_latents", "override_latents", "dead_latent_threshold", "random_seed", "dataset_name",
                   "llm_context_size", "llm_batch_size", "llm_dtype", "buffer", "no_overlap", "act_threshold_frac",
                   "total_tokens", "scoring", "max_tokens_in_explanation", "use_demos_in_explanation",
                   "n_top_ex_for_generation", "n_iw_sampled_ex_for_generation", "n_top_ex_for_scoring",
                   "n_random_ex_for_scoring", "n_iw_sampled_ex_for_scoring"},
    "ravel": {"entity_attribute_selection", "top_n_entities", "top_n_templates", "full_dataset_downsample",
              "num_pairs_per_attribute", "train_test_split", "force_dataset_recompute", "model_name", "llm_dtype",
              "llm_batch_size", "learning_rate", "num_epochs", "train_mdas", "n_generated_tokens", "random_seed",
              "artifact_dir"},
}
DETAILS = {"sparse_probing": {"dataset_name", *_PROBE}}


def check_schema(doc: dict) -> None:
    """Field by field: the names and nesting SAEBench declares, flat numeric metric groups."""
    assert set(doc) == TOP
    kind = doc["eval_type_id"]
    assert kind in METRICS
    assert isinstance(doc["eval_config"], dict) and set(doc["eval_config"]) <= CONFIG[kind]
    uuid.UUID(doc["eval_id"])
    assert isinstance(doc["datetime_epoch_millis"], int) and 0 <= doc["datetime_epoch_millis"] <= 9999999999999
    metrics = doc["eval_result_metrics"]
    assert metrics and set(metrics) <= set(METRICS[kind])
    for category, values in metrics.items():
        assert values and set(values) <= METRICS[kind][category], (kind, category)
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())
    assert isinstance(doc["eval_result_details"], list)
    for entry in doc["eval_result_details"]:
        assert "dataset_name" in entry and set(entry) <= DETAILS[kind]
    assert isinstance(doc["sae_bench_commit_hash"], str)
    for name in ("sae_lens_id", "sae_lens_release_id", "sae_lens_version"):
        assert doc[name] is None or isinstance(doc[name], str)
    assert doc["sae_cfg_dict"] is None or isinstance(doc["sae_cfg_dict"], dict)


def exported(out: Path) -> dict[str, list[dict]]:
    return {kind.name: [json.loads(p.read_text()) for p in sorted(kind.glob("*_eval_results.json"))]
            for kind in sorted(out.iterdir())}


def source(results: Path, doc: dict) -> dict:
    key = doc["eval_result_unstructured"]["saebench_sanity"]["key"]
    return ResultStore(results).load_result(key)


def scores_of(rec: dict, name: str) -> dict:
    return next(e for e in rec["metrics"].values() if e.get("name") == name and e["status"] == "ok")


def test_a_tiny_runs_results_export_as_saebench_core(tmp_path, fake_registry, capsys):
    import torch

    from saebench_sanity.config import load as load_config
    from saebench_sanity.harness.executor import execute, write_run_manifest
    from saebench_sanity.harness.plan import build_plan
    from tests.conftest import tiny_toml

    torch.set_num_threads(1)
    cfg = load_config(str(tiny_toml(tmp_path, modes=("trained", "frozen_decoder"), seeds=(0,),
                                    metrics=("reconstruction", "latent-mean"), steps=10)))
    plan = build_plan(cfg, fake_registry)
    store = ResultStore(cfg.output_dir)
    write_run_manifest(plan, store)
    execute(plan, store, fake_registry, jobs=1)
    out = tmp_path / "export"
    assert main(["export", "--results", str(cfg.output_dir), "--format", "saebench", "--out", str(out)]) == 0
    assert "2 SAEBench eval-output file(s) for 2 cell(s)" in capsys.readouterr().out
    docs = exported(out)
    assert list(docs) == ["core"] and len(docs["core"]) == 2
    for doc in docs["core"]:
        check_schema(doc)
        rec = source(Path(cfg.output_dir), doc)
        s = scores_of(rec, "reconstruction")["scores"]
        m = doc["eval_result_metrics"]
        assert m["reconstruction_quality"] == {"explained_variance": s["explained_variance_saebench"]}
        assert m["sparsity"] == {"l0": s["l0"]} and m["shrinkage"] == {"l2_ratio": s["shrinkage"]}
        assert m["misc_metrics"] == {"frac_alive": 1.0 - s["dead_fraction"]}
        assert "model_performance_preservation" not in m  # no loss_recovered on a synthetic set: left out
        cfg_json = json.loads((Path(cfg.output_dir) / "checkpoints" / rec["key"] / "cfg.json").read_text())
        assert doc["sae_cfg_dict"] == cfg_json and doc["sae_lens_id"] is None
        assert doc["eval_result_unstructured"]["saebench_sanity"]["cell"] == rec["cell"]
    again = tmp_path / "again"
    assert main(["export", "--results", str(cfg.output_dir), "--out", str(again)]) == 0
    assert exported(again) == docs  # same ids, same times, same numbers


@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    """Four committed records of the real board (every eval type) exported without their run.json."""
    tmp = tmp_path_factory.mktemp("real")
    results = tmp / "res"
    (results / "results").mkdir(parents=True)
    for path in sorted(glob.glob(str(REPO / "leaderboards" / "results" / "real" / "results" / "*.json")))[:4]:
        shutil.copy(path, results / "results")
    assert main(["export", "--results", str(results), "--out", str(tmp / "out")]) == 0
    return results, exported(tmp / "out")


def test_committed_real_records_export_every_eval_type_with_their_numbers(real_export):
    results, docs = real_export
    assert sorted(docs) == ["autointerp", "core", "ravel", "sparse_probing"]
    for kind, items in docs.items():
        assert len(items) == 4
        for doc in items:
            check_schema(doc)
            rec = source(results, doc)
            m = doc["eval_result_metrics"]
            if kind == "core":
                lr = scores_of(rec, "loss_recovered")["scores"]
                assert m["model_performance_preservation"] == {
                    "ce_loss_score": lr["loss_recovered"], "ce_loss_with_ablation": lr["ce_zero"],
                    "ce_loss_with_sae": lr["ce_sae"], "ce_loss_without_sae": lr["ce_clean"]}
                assert m["model_behavior_preservation"] == {"kl_div_score": lr["kl_div_score"], "kl_div_with_sae": lr["kl_div"]}
                assert doc["eval_config"]["compute_ce_loss"] is True
            elif kind == "sparse_probing":
                entry = scores_of(rec, "sparse_probing")
                assert m["llm"] == {"llm_test_accuracy": entry["scores"]["full_probe"]}
                assert m["sae"] == {f"sae_top_{k}_test_accuracy": entry["scores"][f"top{k}"] for k in entry["params"]["k_values"]}
                by_task = {d["dataset_name"]: d for d in doc["eval_result_details"]}
                assert sorted(by_task) == sorted(entry["details"])
                for task, values in entry["details"].items():
                    assert by_task[task]["llm_test_accuracy"] == values["full_probe"]
                    assert by_task[task]["sae_top_1_test_accuracy"] == values["top1"]
                assert doc["eval_config"]["dataset_names"] == entry["params"]["tasks"]
            elif kind == "autointerp":
                entry = scores_of(rec, "autointerp")
                per_latent = [x["score"] for x in entry["details"]["latents"]]
                assert m["autointerp"]["autointerp_score"] == entry["scores"]["score"]
                assert m["autointerp"]["autointerp_score"] == pytest.approx(sum(per_latent) / len(per_latent))
                import numpy as np

                assert m["autointerp"]["autointerp_std_dev"] == pytest.approx(float(np.std(per_latent, ddof=1)), abs=1e-12)
            else:
                s = scores_of(rec, "ravel")["scores"]
                assert m["ravel"] == {"disentanglement_score": s["score"], "cause_score": s["cause"],
                                      "isolation_score": s["isolation"]}
                assert s["score"] == pytest.approx((s["cause"] + s["isolation"]) / 2)


def test_export_of_a_folder_without_results_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", "--results", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results" in err


def test_an_out_that_is_a_file_is_one_line_exit_2_before_anything_is_read(tmp_path, capsys):
    """It crashed half-way ('unexpected NotADirectoryError', exit 1) after reading the records."""
    (tmp_path / "file").write_text("x")
    assert main(["export", "--results", str(REPO / "leaderboards" / "results" / "real"), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "is not a folder" in err
