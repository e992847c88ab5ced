"""Leaderboards from a hand-made results directory: the numbers, the verdicts, the files, --check."""

import json

import pytest

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.leaderboard import aggregate, render

EV = {"direction": "higher", "chance": 0.0, "min_effect": None, "definition": "ev"}
MSE = {"direction": "lower", "chance": None, "min_effect": None, "definition": "mse"}
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


def make_results(root, unconverged=()):
    st = ResultStore(root)
    keys = []
    for (arch, mode), vals in VALUES.items():
        for seed, v in enumerate(vals):
            key = f"{arch}-{mode}-{seed}"
            keys.append(key)
            st.write_result(key, {
                "key": key, "label": f"toy/{arch}/{mode}/s{seed}", "status": "ok", "error": None,
                "cell": {"set": "toy", "arch": arch, "mode": mode, "seed": seed, "is_baseline": mode in BASELINES,
                         "trains": mode != "untrained"},
                "training": {"converged": (arch, mode) not in unconverged, "steps": 10},
                "metrics": {
                    "reconstruction:abc": {"name": "reconstruction", "status": "ok",
                                           "scores": {"explained_variance": v, "mse": 1 - v, "l0": 3.0},
                                           "score_info": {"explained_variance": EV, "mse": MSE, "l0": L0},
                                           "score_order": ["explained_variance", "mse", "l0"], "seconds": 0.1},
                    "ground_truth:def": {"name": "ground_truth", "status": "skipped", "seconds": 0.0,
                                         "reason": "needs ground_truth; set 'toy' provides nothing extra"},
                }})
    st.write_result("broken", {"key": "broken", "label": "toy/gated/trained/s0", "status": "failed",
                               "error": "RuntimeError: boom", "cell": {"set": "toy", "arch": "gated",
                                                                       "mode": "trained", "seed": 0}, "metrics": {}})
    st.write_run({"name": "toy", "cell_keys": keys + ["broken"], "metric_keys": ["reconstruction:abc", "ground_truth:def"],
                  "config": {"sets": ["toy"], "architectures": ["topk", "relu", "gated"],
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
    assert r["best_baseline"] == "frozen_encoder" and r["diff"] == pytest.approx(0.21)
    assert r["verdict"] == "BEATS"  # untrained (0.95) is a reference and does not decide
    assert r["verdict_vs_frozen_decoder"] == "BEATS"
    r = row(t, "relu", "explained_variance")
    assert r["best_baseline"] == "frozen_decoder" and r["verdict"] == "FAILS"
    assert r["verdict_vs_frozen_encoder"] == "BEATS"
    r = row(t, "relu", "mse")  # lower is better: same story
    assert r["best_baseline"] == "frozen_decoder" and r["verdict"] == "FAILS"
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
    make_results(tmp_path / "res")
    col = aggregate.collect(tmp_path / "res")
    out = render.render(col, name="toy", results="res", out="lb")
    md = out.markdown
    header = md.splitlines()[2]
    assert header.startswith("Regenerate the table with `saebench leaderboard --results res --out lb --name toy`")
    assert "re-run the suite that produced the results with `saebench run" in header
    assert "| arch" in md and "explained_variance ↑" in md and "mse ↓" in md
    assert "**FAILS**" in md and "BEATS" in md
    assert "0.820 ± 0.020" in md  # trained topk EV, mean ± sd
    assert "chance" in md.splitlines()[md.splitlines().index(next(l for l in md.splitlines() if l.startswith("| arch")))]
    assert "skipped on `toy`: needs ground_truth" in md and "toy/gated/trained/s0` failed: RuntimeError: boom" in md
    assert "![toy](toy/toy.png)" in md
    assert md.rstrip().endswith("read every score against its chance level.")
    payload = json.loads(out.json)
    assert payload["command"] == "saebench leaderboard --results res --out lb --name toy"
    assert {r["verdict"] for r in payload["rows"]} >= {"BEATS", "FAILS", "—"}
    assert out.csv.splitlines()[0].startswith("set,arch,metric,score,direction,chance")


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
