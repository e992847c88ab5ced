"""Leaderboards from a hand-made results directory: the numbers, the verdicts, the files, --check."""

import json

import pandas as pd
import pytest
from scipy import stats

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.leaderboard import aggregate, render

# recorded as not improving with training: these toy rows follow the plain rule (a still-improving
# side always waits); the exceptions have their own test below
EV = {"direction": "higher", "chance": 0.0, "min_effect": None, "definition": "ev", "improves_with_training": False}
MSE = {"direction": "lower", "chance": None, "min_effect": None, "definition": "mse", "improves_with_training": False}
L0 = {"direction": None, "chance": None, "min_effect": None, "definition": "l0"}
BASELINES = {"frozen_decoder", "frozen_encoder"}

# (arch, mode) -> per-seed explained variance; mse = 1 - ev
VALUES = {
    ("topk", "trained"): [0.80, 0.82, 0.84],
    ("topk", "frozen_decoder"): [0.50, 0.52, 0.54],
    ("topk", "frozen_encoder"): [0.60, 0.61, 0.62],
    ("topk", "untrained"): [0.95, 0.95, 0.95],  # a reference mode better than trained: never decides
    ("relu", "trained"): [0.40, 0.41, 0.42],
    ("relu", "frozen_decoder"): [0.45, 0.46, 0.47],
    ("relu", "frozen_encoder"): [0.10, 0.10, 0.10],
    ("relu", "untrained"): [0.0, 0.0, 0.0],
}


def make_results(root, unconverged=(), l0=None, values=None, set_name="toy"):
    """Toy results: topk targets L0 3 (``k``), relu has a target but an L1 penalty; ``l0``:
    (arch, mode) -> the ``reconstruction.l0`` score (default 3.0 everywhere); ``set_name``: the
    set the records name (an unregistered 'toy' by default)."""
    st = ResultStore(root)
    keys = []
    for (arch, mode), vals in (values or VALUES).items():
        for seed, v in enumerate(vals):
            key = f"{arch}-{mode}-{seed}"
            keys.append(key)
            st.write_result(key, {
                "key": key, "label": f"{set_name}/{arch}/{mode}/s{seed}", "status": "ok", "error": None,
                "cell": {"set": set_name, "arch": arch, "mode": mode, "seed": seed, "is_baseline": mode in BASELINES,
                         "trains": mode != "untrained", "target_l0": 3,
                         "arch_params": {"k": 3} if arch == "topk" else {"l1_coefficient": 1.0}},
                "training": {"converged": (arch, mode) not in unconverged, "steps": 0 if mode == "untrained" else 10 + seed,
                             "l0_train": 9.0},
                "metrics": {
                    "reconstruction:abc": {"name": "reconstruction", "status": "ok",
                                           "scores": {"explained_variance": v, "mse": 1 - v,
                                                      "l0": (l0 or {}).get((arch, mode), 3.0)},
                                           "score_info": {"explained_variance": EV, "mse": MSE, "l0": L0},
                                           "score_order": ["explained_variance", "mse", "l0"], "seconds": 0.1},
                    "ground_truth:def": {"name": "ground_truth", "status": "skipped", "seconds": 0.0,
                                         "reason": f"needs ground_truth; set '{set_name}' provides nothing extra"},
                }})
    st.write_result("broken", {"key": "broken", "label": f"{set_name}/gated/trained/s0", "status": "failed",
                               "error": "RuntimeError: boom", "cell": {"set": set_name, "arch": "gated",
                                                                       "mode": "trained", "seed": 0}, "metrics": {}})
    st.write_run({"name": "toy", "cell_keys": keys + ["broken"], "metric_keys": ["reconstruction:abc", "ground_truth:def"],
                  "config": {"sets": [set_name], "architectures": ["topk", "relu", "gated"],
                             "modes": ["trained", "frozen_decoder", "frozen_encoder", "untrained"],
                             "verdict": {"min_effect": 0.01, "n_sigma": 1.0}}})
    return st


def row(table, arch, score):
    return table[(table["arch"] == arch) & (table["score"] == score)].iloc[0]


def test_summary_numbers_and_verdicts(tmp_path):
    make_results(tmp_path)
    col = aggregate.collect(tmp_path)
    t = aggregate.summary(col)
    r = row(t, "topk", "explained_variance")
    assert r["trained_mean"] == pytest.approx(0.82) and r["trained_sd"] == pytest.approx(0.02)
    assert r["baseline"] == "frozen_encoder" and r["diff"] == pytest.approx(0.21)
    assert r["verdict"] == "BEATS"  # untrained (0.95) is a reference and does not decide
    assert r["verdict_vs_frozen_decoder"] == "BEATS"
    # the interval numbers against each baseline: Welch, as scipy computes it
    ref = stats.ttest_ind(VALUES[("topk", "trained")], VALUES[("topk", "frozen_encoder")], equal_var=False,
                          alternative="greater")
    assert r["d_vs_frozen_encoder"] == pytest.approx(0.21) and r["df_vs_frozen_encoder"] == pytest.approx(ref.df)
    assert r["lower_vs_frozen_encoder"] == pytest.approx(ref.confidence_interval(0.95).low)
    assert r["lower"] == r["lower_vs_frozen_encoder"] and r["upper"] == r["upper_vs_frozen_encoder"]
    r = row(t, "relu", "explained_variance")
    assert r["baseline"] == "frozen_decoder" and r["verdict"] == "FAILS" and r["fails_vs"] == "frozen_decoder"
    assert r["verdict_vs_frozen_encoder"] == "BEATS"
    r = row(t, "relu", "mse")  # lower is better: same story
    assert r["baseline"] == "frozen_decoder" and r["verdict"] == "FAILS"
    # steps used (mean over seeds) and final L0 (the reconstruction.l0 score) per mode
    assert r["trained_steps"] == 11 and r["untrained_steps"] == 0 and r["frozen_decoder_l0"] == 3.0
    assert row(t, "topk", "mse")["target_l0"] == 3 and pd.isna(r["target_l0"])  # relu's L1 targets no L0
    assert row(t, "topk", "l0")["verdict"] == "—"
    assert col.skipped == [("toy", "ground_truth", "needs ground_truth; set 'toy' provides nothing extra")]
    assert col.failed == [("toy/gated/trained/s0", "RuntimeError: boom")]
    assert list(t["arch"].drop_duplicates()) == ["topk", "relu"]  # configured order
    assert list(t[t["arch"] == "topk"]["score"]) == ["explained_variance", "mse", "l0"]  # declared order


def test_unconverged_trained_cell_is_undertrained_not_fails(tmp_path):
    make_results(tmp_path, unconverged={("relu", "trained")})
    t = aggregate.summary(aggregate.collect(tmp_path))
    assert row(t, "relu", "explained_variance")["verdict"] == "UNDERTRAINED"
    assert row(t, "topk", "explained_variance")["verdict"] == "BEATS"


def test_markdown_has_command_chance_verdicts_notes_and_rule(tmp_path):
    from saebench_sanity.registry import get_registry

    make_results(tmp_path / "res")
    # as the CLI does: the installed metrics' declarations fill what the toy records do not carry (headline)
    col = aggregate.collect(tmp_path / "res", declared=get_registry().declared_scores())
    out = render.render(col, name="toy", results="res", out="lb")
    md = out.markdown
    header = md.splitlines()[2]
    assert header.startswith("Regenerate the table with `saebench leaderboard --results res --out lb --name toy`")
    assert "re-run the suite that produced the results with `saebench run" in header
    assert "| arch" in md and "explained_variance ↑" in md and "mse ↓" in md
    assert "**FAILS**" in md and "BEATS" in md
    assert "0.820 ± 0.020" in md  # trained topk EV, mean ± sd
    score_header = next(line for line in md.splitlines() if line.startswith("| arch") and "score" in line)
    assert "chance" in score_header and "bounds" in score_header
    assert "| arch   | target L0   | trained   | frozen_decoder   | frozen_encoder   | untrained   |" in md
    assert "| topk   | 3           | 11 / 3.0  | 11 / 3.0         | 11 / 3.0         | 0 / 3.0     |" in md
    assert "| relu   | —           | 11 / 3.0" in md
    assert "skipped on `toy`: needs ground_truth" in md and "toy/gated/trained/s0` failed: RuntimeError: boom" in md
    assert "![toy: trained vs best baseline](toy/toy.png)" in md and "(toy/toy-modes.png)" in md
    assert md.rstrip().endswith("Read every score against its chance level.") and "false BEATS" in md
    payload = json.loads(out.json)
    assert payload["command"] == "saebench leaderboard --results res --out lb --name toy"
    assert {r["verdict"] for r in payload["rows"]} >= {"BEATS", "FAILS", "—"}
    assert out.csv.splitlines()[0].startswith("set,arch,metric,score,direction,chance")
    assert {"lower_vs_frozen_decoder", "upper_vs_frozen_decoder", "se_vs_frozen_decoder", "df_vs_frozen_decoder",
            "trained_steps", "trained_l0"} <= set(out.csv.splitlines()[0].split(","))
    assert (payload["confidence"], payload["min_seeds"], payload["l0_tolerance"]) == (0.95, 3, 0.1)
    assert "n_sigma" not in payload  # the retired rule's parameter, still in the recorded run.json, is ignored


def test_files_are_deterministic_and_check_detects_drift(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_results(tmp_path / "res")
    args = ["leaderboard", "--results", "res", "--out", "lb", "--name", "toy"]
    assert main(args) == 0
    first = {p: (tmp_path / "lb" / p).read_bytes() for p in ("toy.md", "toy.csv", "toy.json")}
    assert (tmp_path / "lb" / "toy" / "toy.png").stat().st_size > 1000
    assert main(args) == 0
    assert first == {p: (tmp_path / "lb" / p).read_bytes() for p in first}
    assert main(args + ["--check"]) == 0
    (tmp_path / "lb" / "toy.csv").write_text("edited\n")
    assert main(args + ["--check"]) == 1
    assert main(args + ["--no-plots"]) == 0 and main(args + ["--check"]) == 0


def test_missing_results_dir_is_a_one_line_error(tmp_path, capsys):
    assert main(["leaderboard", "--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results under") and err.count("\n") == 1


def test_undertrained_rows_show_the_comparison_at_equal_budget_beside_the_verdict(tmp_path):
    make_results(tmp_path / "res", unconverged={("relu", "trained"), ("topk", "trained")})
    col = aggregate.collect(tmp_path / "res")
    t = aggregate.summary(col)
    r = row(t, "relu", "explained_variance")
    assert r["verdict"] == "UNDERTRAINED" and r["at_budget"] == "FAILS"
    assert row(t, "topk", "explained_variance")["at_budget"] == "BEATS"
    md = render.render(col, name="toy", results="res", out="lb").markdown
    assert "UNDERTRAINED [FAILS]" in md and "UNDERTRAINED [BEATS]" in md
    assert "At equal budget, the UNDERTRAINED rows would read: BEATS 2, FAILS 2." in md
    assert "not a verdict" in md


def test_a_recorded_improves_with_training_lets_a_still_improving_trained_sae_beat(tmp_path):
    st = make_results(tmp_path / "res", unconverged={("relu", "trained"), ("topk", "trained")})
    for rec in st.iter_results():
        if rec.get("status") == "ok":
            entry = rec["metrics"]["reconstruction:abc"]
            entry["score_info"] = {**entry["score_info"], "explained_variance": {**EV, "improves_with_training": True}}
            st.write_result(rec["key"], rec)
    t = aggregate.summary(aggregate.collect(tmp_path / "res"))
    assert row(t, "topk", "explained_variance")["verdict"] == "BEATS"  # ahead of converged baselines
    assert row(t, "relu", "explained_variance")["verdict"] == "UNDERTRAINED"  # behind: it may still overtake
    assert row(t, "topk", "mse")["verdict"] == "UNDERTRAINED"  # recorded as not improving with training


def test_collect_keeps_only_the_named_sets(tmp_path):
    make_results(tmp_path / "res")
    assert aggregate.collect(tmp_path / "res", sets=["other"]).long.empty
    assert aggregate.collect(tmp_path / "res", sets=["other"]).sets == []
    assert len(aggregate.collect(tmp_path / "res", sets=["toy"]).long) == len(aggregate.collect(tmp_path / "res").long)


def test_family_leaderboard_names_the_family_in_its_regenerate_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_results(tmp_path / "res", set_name="synth-easy")
    args = ["leaderboard", "--results", "res", "--out", "lb", "--family", "synthetic"]
    assert main(args) == 0
    md = (tmp_path / "lb" / "synthetic.md").read_text()
    assert "--name synthetic --family synthetic`" in md and "synth-easy" in md
    assert main(args + ["--check"]) == 0  # the plots too
    assert main(["leaderboard", "--results", "res", "--out", "lb", "--family", "nonesuch"]) == 2


def test_a_board_written_without_plots_checks_current_without_plots(tmp_path, monkeypatch, capsys):
    """``--check --no-plots`` on a board written with ``--no-plots`` reported it out of date (its
    PNGs missing); a plain ``--check`` still looks for them and says how to regenerate."""
    monkeypatch.chdir(tmp_path)
    make_results(tmp_path / "res", set_name="synth-easy")
    args = ["leaderboard", "--results", "res", "--out", "lb", "--family", "synthetic", "--no-plots"]
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    capsys.readouterr()
    assert main(args[:-1] + ["--check"]) == 1
    assert "synth-easy.png" in capsys.readouterr().err


def test_a_family_the_results_do_not_hold_is_one_line_not_an_empty_board(tmp_path, monkeypatch, capsys):
    """``--family real`` on synthetic results used to write an empty board and exit 0."""
    monkeypatch.chdir(tmp_path)
    make_results(tmp_path / "res", set_name="synth-easy")
    assert main(["leaderboard", "--results", "res", "--out", "lb", "--family", "real", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no activation set of family 'real' (they hold synth-easy)" in err[0], err
    assert not (tmp_path / "lb" / "real.md").exists()


def test_a_run_over_two_set_families_writes_one_leaderboard_per_family():
    from saebench_sanity.config import embedded
    from saebench_sanity.harness.run import leaderboard_groups
    from saebench_sanity.registry import get_registry

    cfg = embedded("default")
    groups = leaderboard_groups(cfg, get_registry())
    assert [(name, family) for name, family, _ in groups] == [("synthetic", "synthetic"), ("real", "real")]
    assert groups[1][2] == ["smollm2-135m-resid12"]
    assert leaderboard_groups(embedded("quick"), get_registry()) == [("quick", None, None)]


def _with_judged_metrics(st, judge_details):
    """Add an autointerp entry (``details`` = ``judge_details``) and a ravel entry to every cell but the last."""
    info = {"direction": "higher", "chance": 0.5, "min_effect": None, "definition": "d"}
    run = st.load_run()
    for key in run["cell_keys"][:-1]:
        rec = st.load_result(key)
        rec["metrics"]["autointerp:j1"] = {"name": "autointerp", "status": "ok", "scores": {"score": 0.6},
                                           "score_info": {"score": info}, "score_order": ["score"],
                                           "params": {"judge": "http", "judge_params": {"model": "m"}, "n_latents": 4},
                                           **({"details": judge_details} if judge_details is not None else {})}
        rec["metrics"]["ravel:r1"] = {"name": "ravel", "status": "ok", "scores": {"score": 0.5},
                                      "score_info": {"score": info}, "score_order": ["score"], "params": {"n_pairs": 16}}
        st.write_result(key, rec)
    run["metric_keys"] += ["autointerp:j1", "ravel:r1"]
    st.write_run(run)


def test_judge_identity_and_metric_parameters_are_printed_and_shared_score_names_get_their_metric(tmp_path):
    st = make_results(tmp_path / "res")
    # an identity no installed judge would produce: the leaderboard must print what was recorded
    _with_judged_metrics(st, {"judge": "openai_compatible:llama-3-70b@http://gpu-box:8000/v1"})
    out = render.render(aggregate.collect(tmp_path / "res"), name="toy", results="res", out="lb")
    assert "- `autointerp` judged by **openai_compatible:llama-3-70b@http://gpu-box:8000/v1**: judge=\"http\"" in out.markdown
    assert "- `ravel`: n_pairs=16" in out.markdown
    assert "| autointerp.score ↑" in out.markdown and "| ravel.score ↑" in out.markdown
    assert "| explained_variance ↑" in out.markdown  # unshared names stay short
    assert json.loads(out.json)["judges"] == ["openai_compatible:llama-3-70b@http://gpu-box:8000/v1"]


def test_records_without_a_recorded_judge_identity_say_so_instead_of_guessing(tmp_path):
    st = make_results(tmp_path / "res")
    _with_judged_metrics(st, None)
    out = render.render(aggregate.collect(tmp_path / "res"), name="toy", results="res", out="lb")
    assert "- `autointerp` judged by **http (identity not recorded)**" in out.markdown
    assert json.loads(out.json)["judges"] == ["http (identity not recorded)"]


def test_a_results_directory_without_run_json_still_collects_every_record(tmp_path):
    make_results(tmp_path / "res")
    (tmp_path / "res" / "run.json").unlink()
    everything = aggregate.collect(tmp_path / "res")
    assert len(everything.long) == len(aggregate.collect(tmp_path / "res", sets=["toy"]).long) > 0
    assert aggregate.collect(tmp_path / "res", sets=["other"]).long.empty


def test_l0_not_matched_only_where_the_architecture_targets_an_l0(tmp_path):
    # topk's frozen encoder ends at L0 5 against k = 3; relu's (an L1 penalty) at 9: only topk is withheld
    make_results(tmp_path / "res", l0={("topk", "frozen_encoder"): 5.0, ("relu", "frozen_encoder"): 9.0})
    col = aggregate.collect(tmp_path / "res")
    t = aggregate.summary(col)
    r = row(t, "topk", "explained_variance")
    assert r["verdict"] == "L0 NOT MATCHED" and r["frozen_encoder_l0"] == 5.0
    assert r["verdict_vs_frozen_decoder"] == "BEATS" and r["verdict_vs_frozen_encoder"] == "L0 NOT MATCHED"
    assert row(t, "relu", "explained_variance")["verdict"] == "FAILS"
    md = render.render(col, name="toy", results="res", out="lb").markdown
    assert "L0 NOT MATCHED 2" in md  # topk EV and mse
    assert "| topk   | 3           | 11 / 3.0  | 11 / 3.0         | 11 / 5.0" in md


def test_fewer_than_three_seeds_give_no_verdict(tmp_path):
    two = {key: vals[:2] for key, vals in VALUES.items()}
    make_results(tmp_path / "res", values=two)
    t = aggregate.summary(aggregate.collect(tmp_path / "res"))
    assert set(t[t["direction"].notna()]["verdict"]) == {"SEEDS"}


def test_constant_rows_never_fail(tmp_path):
    const = {key: [0.5, 0.5, 0.5] for key in VALUES}
    make_results(tmp_path / "res", values=const)
    t = aggregate.summary(aggregate.collect(tmp_path / "res"))
    judged = t[t["direction"].notna()]
    # EV has chance 0 (0.5 is far from it): no interval, INCONCLUSIVE; never FAILS
    assert set(judged["verdict"]) == {"INCONCLUSIVE"}
