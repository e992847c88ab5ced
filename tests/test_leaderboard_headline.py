"""The headline table (which scores, which cells, which SAEs fail), its plot, the terminal report,
and `saebench leaderboard` on empty, corrupted and partial results folders."""

import json

import pytest
from rich.console import Console

from saebench_sanity.cli import main
from saebench_sanity.errors import PluginError
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.leaderboard import aggregate, headline as H, render
from saebench_sanity.metrics.base import ScoreInfo
from tests.test_leaderboard_render import make_results


def declared():
    """What the installed metrics declare: the CLI hands this to the leaderboard (the toy records
    below carry no headline declaration, so their headline comes from here)."""
    from saebench_sanity.registry import get_registry

    return get_registry().declared_scores()


def rows_of(root, **kw):
    col = aggregate.collect(root, declared=declared(), **kw)
    return col, json.loads(render.render(col, name="toy", results="res", out="lb").json)["rows"]


def test_headline_cells_say_verdict_mark_trained_vs_closest_baseline_and_what_fails(tmp_path):
    make_results(tmp_path / "res")
    _, rows = rows_of(tmp_path / "res")
    cols, table = H.table(rows, "toy")
    # the toy records carry no headline declaration: the installed reconstruction spec's applies
    assert [(c.title, c.metric, c.score) for c in cols] == [("explained variance", "reconstruction", "explained_variance")]
    by_arch = {r.arch: r for r in table}
    assert by_arch["topk"].cells["explained variance"].text == "✓ BEATS .820 vs .610 frozen_encoder"
    # relu: 0.41 vs the frozen decoder's 0.46; mse (1 - ev) FAILS too but is not a headline score
    assert by_arch["relu"].cells["explained variance"].text == "✗ FAILS .410 vs .460 frozen_decoder"
    assert by_arch["relu"].fails_on == ["explained variance"] and by_arch["relu"].fails_other == ["mse"]
    assert by_arch["relu"].fails_text == "explained variance (also mse)"
    assert [r.arch for r in H.failing(rows, ["toy"])] == ["relu"]
    assert H.count_line(table) == "1 of 2 SAEs fail to beat a random baseline on a headline score"
    assert H.counts(rows, ["toy"]) == {"BEATS": 1, "FAILS": 1}


def test_markdown_puts_the_headline_first_and_keeps_descriptive_scores_out(tmp_path):
    make_results(tmp_path / "res")
    out = render.render(aggregate.collect(tmp_path / "res", declared=declared()), name="toy", results="res", out="lb")
    md = out.markdown
    assert md.index("## Headline") < md.index("## Full scores")
    head = md[md.index("## Headline"):md.index("## Full scores")]
    header = next(line for line in head.splitlines() if line.startswith("| SAE"))
    assert "| explained variance ↑" in header and header.rstrip(" |").endswith("fails on")
    assert "| relu  | **✗ FAILS .410 vs .460 frozen_decoder** | explained variance (also mse) |" in head
    assert "1 of 2 SAEs fail to beat a random baseline on a headline score." in head
    assert "explained variance = `reconstruction.explained_variance`" in head
    full = md[md.index("## Full scores"):]
    assert "| topk   | mse ↓" in full and "| l0" not in full  # l0 has no direction: CSV / JSON only
    assert ",l0," in out.csv and any(r["score"] == "l0" for r in json.loads(out.json)["rows"])


def _add_bulk(st, ev_bulk, recorded_headline=True):
    """Give every ok record a reconstruction_bulk entry whose EV is ``ev_bulk`` (declared a headline
    with priority 1 in the record when ``recorded_headline``)."""
    info = {"direction": "higher", "chance": 0.0, "min_effect": None, "definition": "bulk"}
    if recorded_headline:
        info.update(headline="explained variance", headline_priority=1)
    run = st.load_run()
    for key in run["cell_keys"]:
        rec = st.load_result(key)
        if rec["status"] == "ok":
            rec["metrics"]["reconstruction_bulk:b"] = {"name": "reconstruction_bulk", "status": "ok",
                                                       "scores": {"explained_variance": ev_bulk},
                                                       "score_info": {"explained_variance": info},
                                                       "score_order": ["explained_variance"]}
            st.write_result(key, rec)
    run["metric_keys"].append("reconstruction_bulk:b")
    st.write_run(run)


def test_the_higher_priority_score_fills_a_shared_headline_column_and_records_override_the_spec(tmp_path):
    st = make_results(tmp_path / "res")
    _add_bulk(st, 0.5)
    _, rows = rows_of(tmp_path / "res")
    cols, table = H.table(rows, "toy")
    assert [(c.title, c.metric) for c in cols] == [("explained variance", "reconstruction_bulk")]
    assert table[0].cells["explained variance"].verdict == "INCONCLUSIVE"  # constant 0.5 everywhere: no interval
    # a record that declares no headline for a score is believed over the installed spec; records
    # written before scores declared one fall back to the spec; an uninstalled metric has none, and
    # without the declarations handed down only the records count
    spec = declared()
    assert H.headline_of("reconstruction", "explained_variance", {"headline": ""}, spec) == ("", 0)
    assert H.headline_of("reconstruction", "explained_variance", {}, spec) == ("explained variance", 0)
    assert H.headline_of("no_such_metric", "x", {}, spec) == ("", 0)
    assert H.headline_of("reconstruction", "explained_variance", {}) == ("", 0)
    assert H.improves_with_training_of("reconstruction", "explained_variance", {}, spec)
    assert not H.improves_with_training_of("reconstruction", "explained_variance", {"improves_with_training": False}, spec)
    assert not H.improves_with_training_of("reconstruction", "explained_variance", {})


def test_a_descriptive_score_cannot_be_a_headline():
    with pytest.raises(PluginError, match="needs a direction"):
        ScoreInfo(direction=None, headline="L0")


def test_builtin_metrics_declare_the_headline_scores_of_both_families():
    from saebench_sanity.registry import get_registry

    reg = get_registry()
    declared = {(m, s): (i.headline, i.headline_priority) for m in reg.names("metric")
                for s, i in reg.get("metric", m).scores.items() if i.headline}
    assert declared == {
        ("reconstruction", "explained_variance"): ("explained variance", 0),
        ("reconstruction_bulk", "explained_variance"): ("explained variance", 1),
        ("ground_truth", "recovery"): ("recovery", 0), ("ground_truth", "mcc"): ("MCC", 0),
        ("loss_recovered", "loss_recovered"): ("loss recovered", 0),
        ("sparse_probing", "top1"): ("sparse probing top-1", 0),
        ("autointerp", "score"): ("AutoInterp", 0), ("ravel", "score"): ("RAVEL", 0)}


def test_verdict_plot_is_written_without_leaving_temporaries(tmp_path):
    from saebench_sanity.leaderboard.plots import plot_headline

    make_results(tmp_path / "res")
    _, rows = rows_of(tmp_path / "res")
    path = tmp_path / "lb" / "toy" / "toy.png"
    assert plot_headline(rows, "toy", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert [p.name for p in path.parent.iterdir()] == ["toy.png"]
    assert not plot_headline(rows, "other-set", tmp_path / "lb" / "toy" / "other.png")


def test_terminal_report_ends_with_headline_html_path_and_failing_count(tmp_path):
    from types import SimpleNamespace

    from saebench_sanity.report import print_final

    make_results(tmp_path / "res")
    col = aggregate.collect(tmp_path / "res", declared=declared())
    result = SimpleNamespace(outcomes=[], plan=SimpleNamespace(metrics=[]), collected=col, table=aggregate.summary(col),
                             summary={"cells": 25, "trained_now": 0, "train_seconds": 0.0, "failed": 1, "metric_errors": 0},
                             leaderboard_paths=[tmp_path / "lb" / "toy.md", tmp_path / "lb" / "index.html"])
    console = Console(record=True, width=200)
    print_final(console, result)
    text = console.export_text()
    tail = text[text.index("toy: trained SAE vs closest random baseline"):]
    assert "✗ FAILS" in tail and ".410 vs .460 frozen_decoder" in tail and "✓ BEATS" in tail
    assert "1 of 2 SAEs fail to beat a random baseline on a headline score: toy/relu (explained variance)." in tail
    assert tail.rstrip().endswith(f"open in a browser: {tmp_path / 'lb' / 'index.html'}")


# -- bad input ------------------------------------------------------------------------------------

def one_line_error(capsys, results):
    code = main(["leaderboard", "--results", str(results), "--out", str(results.parent / "lb"), "--name", "toy",
                 "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_empty_and_corrupted_results_folders_are_one_line_errors_naming_the_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "has no results/ folder" in one_line_error(capsys, tmp_path / "empty")
    (tmp_path / "nores" / "results").mkdir(parents=True)
    assert "no result record" in one_line_error(capsys, tmp_path / "nores")
    make_results(tmp_path / "res")
    bad = tmp_path / "res" / "results" / "topk-trained-1.json"
    bad.write_text('{"cell": {"set": "toy"')
    err = one_line_error(capsys, tmp_path / "res")
    assert str(bad) in err and "not valid JSON" in err
    bad.write_text(json.dumps({"cell": {"set": "toy", "arch": "topk", "seed": 1}, "status": "ok"}))
    assert f"{bad}: result record has no 'cell.mode'" in one_line_error(capsys, tmp_path / "res")
    rec = {"cell": {"set": "toy", "arch": "topk", "mode": "trained", "seed": 1}, "status": "ok",
           "metrics": {"reconstruction:abc": {"status": "ok", "scores": {"mse": "abc"}}}}
    bad.write_text(json.dumps(rec))
    assert "score reconstruction:abc/mse is 'abc', not a number" in one_line_error(capsys, tmp_path / "res")
    bad.write_text(json.dumps({**rec, "metrics": {}, "cell": {**rec["cell"], "seed": "x"}}))
    assert "'cell.seed' is 'x', not an integer" in one_line_error(capsys, tmp_path / "res")
    bad.write_text("[1, 2]")
    assert "holds a JSON list, not an object" in one_line_error(capsys, tmp_path / "res")
    (tmp_path / "res" / "run.json").write_text("{")
    err = one_line_error(capsys, tmp_path / "res")
    assert str(tmp_path / "res" / "run.json") in err and "not valid JSON" in err


def test_a_partial_folder_renders_and_names_the_missing_cells_and_metrics(tmp_path, capsys):
    st = make_results(tmp_path / "res")
    run = st.load_run()
    run["config"]["seeds"] = [0, 1, 2]  # the toy plan: 3 archs x 4 modes x 3 seeds would be 36 cells
    run["config"]["architectures"] = ["topk", "relu"]
    run["cell_keys"] = [k for k in run["cell_keys"] if k != "broken"]
    ResultStore(tmp_path / "res").write_run(run)
    (tmp_path / "res" / "results" / "relu-frozen_decoder-2.json").unlink()
    rec = st.load_result("topk-trained-0")
    del rec["metrics"]["reconstruction:abc"]
    st.write_result("topk-trained-0", rec)
    code = main(["leaderboard", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb"), "--name", "toy",
                 "--no-plots"])
    err = capsys.readouterr().err
    assert code == 0 and "is partial: 2 planned cell(s) or metric(s) have no record" in err
    md = (tmp_path / "lb" / "toy.md").read_text()
    assert "**Partial results**: 2 planned cell(s) or metric(s) have no record" in md
    assert "toy/relu/frozen_decoder/s2" in md and "toy/topk/trained/s0: metric reconstruction" in md
    assert json.loads((tmp_path / "lb" / "toy.json").read_text())["missing"] == [
        "toy/relu/frozen_decoder/s2", "toy/topk/trained/s0: metric reconstruction"]
    assert "SEEDS" in md  # relu now has 2 frozen-decoder seeds: no verdict, said so


def test_a_cell_without_a_verdict_baseline_shows_the_best_baseline_in_the_scores_direction():
    row = {"direction": "higher", "verdict_vs_a": "SEEDS", "verdict_vs_b": "SEEDS", "a_mean": 0.3, "b_mean": 0.5}
    assert H.best_baseline(row) == "b" and H.best_baseline({**row, "direction": "lower"}) == "a"
    assert H.best_baseline({**row, "b_mean": None}) == "a" and H.best_baseline({**row, "direction": None}) is None
    rows = [{"set": "s", "arch": "topk", "metric": "m", "score": "x", "headline": "X", "verdict": "SEEDS",
             "baseline": None, "trained_mean": 0.4, **row}]
    assert H.table(rows, "s")[1][0].cells["X"].text == "# SEEDS .400 vs .500 b"
