"""training.replay and scripts/stop-replay.py: a committed member's stored curves replay its stop,
and the figures docs/training-modes.md quotes for a rule that leaves the TopK family's total loss
(MSE plus the AuxK term) out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from saebench_sanity.training.replay import replay_stop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "stop-replay.py"


def _record(board: str, key: str) -> dict:
    return json.loads((ROOT / "leaderboards" / "results" / board / "results" / f"{key}.json").read_text())


def test_a_member_under_matched_l0_control_replays_to_its_stop():
    """Real set, ReLU soft-frozen baseline, seed 1: its L0 controller froze and reopened ten times
    before the rule said level at step 6,880; the replay under the same controls stops there, and
    without the controller (the rule alone) it would not."""
    rec = _record("real", "fffd7d2cde21524c29b64393")
    conv = rec["training"]["convergence"]
    assert (rec["cell"]["arch"], rec["cell"]["mode"], conv["l0_control"]["reopened"]) == ("relu", "soft_frozen_decoder", 10)
    out = replay_stop(rec["cell"]["training"], conv["series"], l0_control=conv["l0_control"])
    assert out == {"steps": rec["training"]["steps"], "stopped": True, "level_at": conv["level_at"], "state": conv["state"],
                   "l0_frozen_at": conv["l0_control"]["frozen_at"]}
    assert replay_stop(rec["cell"]["training"], conv["series"])["steps"] != rec["training"]["steps"]


def test_a_topk_member_held_at_its_maximum_only_by_its_total_loss():
    """study-variable-mini, TopK soft-frozen baseline, seed 0: UNDERTRAINED at its 12,000-step
    maximum because its total loss (MSE plus AuxK) was still falling, while its MSE and recovery
    were not improving. Without the loss curve the rule calls it level at step 8,230."""
    rec = _record("synthetic", "2f4332f7feabf88cba98b5d2")
    cell, conv = rec["cell"], rec["training"]["convergence"]
    assert (cell["set"], cell["arch"], cell["mode"], cell["seed"]) == ("study-variable-mini", "topk", "soft_frozen_decoder", 0)
    assert conv["curves"]["loss"]["state"] == "improving"
    assert {conv["curves"][c]["state"] for c in ("mse", "recovery")} <= {"level", "undecided"}
    as_run = replay_stop(cell["training"], conv["series"])
    assert as_run == {"steps": 12000, "stopped": True, "level_at": None, "state": "improving",
                      "l0_frozen_at": None} and rec["training"]["steps"] == 12000
    assert replay_stop(cell["training"], conv["series"], without={"loss"}) == {
        "steps": 8230, "stopped": True, "level_at": 8230, "state": "level", "l0_frozen_at": None}


def test_the_script_checks_the_replay_and_sums_members_and_cohorts():
    folder = ROOT / "leaderboards" / "results" / "real"
    out = subprocess.run([sys.executable, str(SCRIPT), "--without", "loss", "--archs", "matryoshka", str(folder)],
                         check=True, capture_output=True, text=True).stdout
    run_cells = set(json.loads((folder / "run.json").read_text())["cell_keys"])
    recs = [json.loads(p.read_text()) for p in (folder / "results").glob("*.json")]
    recs = [r for r in recs if r["key"] in run_cells and r["cell"]["arch"] == "matryoshka" and r["cell"]["trains"]]
    assert len(recs) == 12
    variant = {r["key"]: replay_stop(r["cell"]["training"], r["training"]["convergence"]["series"], without={"loss"})["steps"]
               for r in recs}
    cohorts: dict[int, list[tuple[int, int]]] = {}
    for r in recs:
        cohorts.setdefault(r["cell"]["seed"], []).append((r["training"]["steps"], variant[r["key"]]))
    run_steps, new_steps = sum(r["training"]["steps"] for r in recs), sum(variant.values())
    assert new_steps < run_steps  # the committed board has such members (docs/training-modes.md)
    assert "12 members replayed, 12 stop where their records stopped" in out
    cohort_run = sum(max(s for s, _ in m) for m in cohorts.values())
    cohort_new = sum(max(v for _, v in m) for m in cohorts.values())
    assert f"| {run_steps:,} -> {new_steps:,} " in out and f"| {cohort_run:,} -> {cohort_new:,} |" in out


@pytest.mark.parametrize("args, fragment", [
    (["--without", "bogus"], "--without bogus: not a judged curve"),
    (["--without", "loss,mse"], "leaves the rule no loss curve"),
    (["--without", "loss"], "is not a folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    res = subprocess.run([sys.executable, str(SCRIPT), *args, str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and fragment in res.stderr


@pytest.mark.parametrize("script", ["stop-replay.py", "steps-report.py"])
def test_a_results_folder_without_records_is_one_line_and_exit_2_before_any_report(tmp_path, script):
    """Both report scripts check every folder before printing any report (``print_reports``)."""
    (tmp_path / "empty" / "results").mkdir(parents=True)
    good = ROOT / "leaderboards" / "results" / "real"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / script), str(good), str(tmp_path / "nothing")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == "" and "nothing/results is not a folder" in res.stderr
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / script), str(tmp_path / "empty")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "no result record" in res.stderr


def test_without_names_a_curve_the_rule_does_not_judge():
    with pytest.raises(ValueError, match="l0: not a judged curve"):
        replay_stop({}, {"loss": "10:1.0", "mse": "10:1.0"}, without={"l0"})


def test_without_the_loss_a_batchtopk_sae_still_learning_would_stop_at_a_fifth_of_its_run():
    """Why the rule keeps the TopK family's total loss: synth-corr-hier, trained BatchTopK, seed 0.
    Judged on MSE and recovery alone it reads level at step 3,630 (recovery .133, MSE .661); the
    run, held by its total loss, went on to its 16,000-step maximum, where recovery was .215, MSE
    .578 and recovery still rising (improving: UNDERTRAINED, honestly)."""
    from saebench_sanity.training.convergence import unpack_curve

    rec = _record("synthetic", "47d1d09d3a3a182567865d15")
    cell, conv = rec["cell"], rec["training"]["convergence"]
    assert (cell["set"], cell["arch"], cell["mode"], cell["seed"]) == ("synth-corr-hier", "batchtopk", "trained", 0)
    assert replay_stop(cell["training"], conv["series"])["steps"] == rec["training"]["steps"] == 16000
    early = replay_stop(cell["training"], conv["series"], without={"loss"})
    assert (early["steps"], early["state"]) == (3630, "level")
    recovery, mse = (dict(unpack_curve(conv["series"][k])) for k in ("recovery", "mse"))
    assert (recovery[3630], recovery[16000]) == (pytest.approx(0.1328, abs=5e-5), pytest.approx(0.2148, abs=5e-5))
    assert (mse[3630], mse[16000]) == (pytest.approx(0.6608, abs=5e-5), pytest.approx(0.5780, abs=5e-5))
    assert conv["curves"]["recovery"]["state"] == "improving"
    # at 3,630 the MSE and recovery windows read level; the loss (MSE plus AuxK) undecided: its
    # interval is wide, not its trend positive (the figures docs/training-modes.md quotes)
    from saebench_sanity.training.convergence import decide

    def at_3630(name):
        curve = [p for p in unpack_curve(conv["series"][name]) if p[0] <= 3630]
        return decide(curve, window_fraction=0.2, tol=0.02, end_step=3630, lower_is_better=name != "recovery")

    loss, mse_d, rec_d = at_3630("loss"), at_3630("mse"), at_3630("recovery")
    assert (mse_d["state"], rec_d["state"], loss["state"]) == ("level", "level", "undecided")
    assert (round(mse_d["rel_improvement"], 3), round(rec_d["rel_improvement"], 3)) == (-0.011, -0.05)
    assert (round(loss["lo"], 3), round(loss["hi"], 3)) == (-0.105, 0.035)


@pytest.mark.parametrize("board, only", [("real", None), ("real-resid24", None),
                                         ("synthetic", {"synth-easy", "study-constant-mini"})])
def test_the_committed_boards_stop_where_this_code_would_stop_them(board, only):
    """Every committed member (on the synthetic board, for time, seed 0 of two sets: every
    architecture, the L0 controller, the recovery probe and a per-architecture maximum) replays
    to the step its record stopped at, in the state it recorded, under this code's rule and
    controls: a change to the early stop that would train the committed cells differently fails
    here until the boards are regenerated."""
    from saebench_sanity.leaderboard.inputs import load

    checked, differ = 0, []
    for rec in load(ROOT / "leaderboards" / "results" / board)[1]:
        cell, training = rec["cell"], rec.get("training") or {}
        conv = training.get("convergence") or {}
        if not cell.get("trains", True) or not conv.get("series") or (only and (cell["set"] not in only or cell["seed"] != 0)):
            continue
        out = replay_stop(cell["training"], conv["series"], l0_control=conv.get("l0_control"))
        checked += 1
        if (out["steps"], out["state"]) != (training["steps"], conv["state"]):
            differ.append((rec["label"], out["steps"], training["steps"], out["state"], conv["state"]))
    assert checked >= 48 and differ == []


def test_a_member_whose_state_changes_is_listed_with_its_values_at_both_stops():
    """The per-member lines the docs' figures come from (docs/training-modes.md: recovery .133
    at the replay's stop against .215 at the record's)."""
    from _scripts import load_script

    rec = _record("synthetic", "47d1d09d3a3a182567865d15")
    conv = rec["training"]["convergence"]
    variant = replay_stop(rec["cell"]["training"], conv["series"], without={"loss"})
    line = load_script("stop-replay.py")._change_line(rec["cell"], conv, rec["training"]["steps"], conv["state"], variant)
    assert line == ("synth-corr-hier/batchtopk/trained/s0: 16,000 improving -> 3,630 level; "
                    "mse 0.578 -> 0.6608, recovery 0.2148 -> 0.1328")


def test_the_two_synthetic_members_that_replay_elsewhere_froze_their_l0_controller_elsewhere():
    """The 2 of 360 (docs/training-modes.md): JumpReLU frozen encoders whose L0 controller froze
    one curve point earlier in the replay. It freezes when the mean L0 of the last 5 intervals is
    within 4% of the target, at most 6.24 for 6; the record keeps L0 to 7 digits and the controller
    read it at full precision, and the stored values' mean where the replay froze is 6.2399998:
    at the edge, just inside it, where the full-precision mean was just outside."""
    from saebench_sanity.leaderboard.inputs import load
    from saebench_sanity.training.convergence import unpack_curve

    wanted = {("study-constant-mini", 1): (4230, 3990, 2890, 2880), ("study-variable-mini", 2): (3420, 3410, 2460, 2450)}
    for rec in load(ROOT / "leaderboards" / "results" / "synthetic")[1]:
        cell, conv = rec["cell"], (rec.get("training") or {}).get("convergence") or {}
        if (cell["arch"], cell["mode"]) != ("jumprelu", "frozen_encoder") or (cell["set"], cell["seed"]) not in wanted:
            continue
        out = replay_stop(cell["training"], conv["series"], l0_control=conv["l0_control"])
        steps, replayed, froze, froze_replayed = wanted.pop((cell["set"], cell["seed"]))
        assert (rec["training"]["steps"], out["steps"]) == (steps, replayed)
        assert (conv["l0_control"]["frozen_at"], out["l0_frozen_at"]) == (froze, froze_replayed)
        l0 = unpack_curve(conv["series"]["l0"])
        last5 = [v for s, v in l0 if froze_replayed - 40 <= s <= froze_replayed]
        assert len(last5) == 5 and 6.24 - 1e-6 < sum(last5) / 5 <= 6.24
    assert wanted == {}
