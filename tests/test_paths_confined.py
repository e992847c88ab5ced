"""Writes stay inside their folder: a name from a record, a config or a plugin that would make a
path leave its folder is refused with one line (exit 2) before anything is written; temporary
files are new files (mkstemp), so a symlink planted at a guessable name is never followed, and
the files written have the umask's mode.

Decision (documented in paths.py): a bad name is refused, not sanitised, since two names that
sanitise alike would silently share one file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saebench_sanity.cli import main
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.io import file_mode
from saebench_sanity.paths import BadInput, confined, safe_name

EV = {"direction": "higher", "chance": 0.0, "min_effect": None, "definition": "ev"}


def results_naming_set(root: Path, set_name: str) -> Path:
    """A results folder of one set (topk trained vs frozen decoder, 3 seeds) whose records name
    the set ``set_name``."""
    st = ResultStore(root)
    keys = []
    for mode, values in (("trained", [0.80, 0.82, 0.84]), ("frozen_decoder", [0.50, 0.52, 0.54])):
        for seed, v in enumerate(values):
            key = f"{mode}-{seed}"
            keys.append(key)
            st.write_result(key, {
                "key": key, "label": f"x/topk/{mode}/s{seed}", "status": "ok", "error": None,
                "cell": {"set": set_name, "arch": "topk", "mode": mode, "seed": seed,
                         "is_baseline": mode != "trained", "trains": True, "target_l0": 3, "arch_params": {"k": 3}},
                "training": {"converged": True, "steps": 10, "l0_train": 3.0},
                "metrics": {"reconstruction:abc": {
                    "name": "reconstruction", "status": "ok", "scores": {"explained_variance": v},
                    "score_info": {"explained_variance": EV}, "score_order": ["explained_variance"], "seconds": 0.1}},
            })
    st.write_run({"name": "toy", "cell_keys": keys, "metric_keys": ["reconstruction:abc"],
                  "config": {"sets": [set_name], "architectures": ["topk"], "modes": ["trained", "frozen_decoder"]}})
    return root


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "x\ny", "n" * 201, 3, None])
def test_safe_name_refuses_anything_but_one_plain_component(bad):
    with pytest.raises(BadInput) as err:
        safe_name("run.name", bad)
    assert "\n" not in str(err.value) and "run.name" in str(err.value)


def test_safe_name_keeps_ordinary_names():
    for good in ("default", "smollm2-135m-resid12", "synth_easy", "v1.2", "run 3", "ünïcode"):
        assert safe_name("name", good) == good


def test_confined_refuses_a_symlink_that_leads_out(tmp_path):
    base, outside = tmp_path / "out", tmp_path / "elsewhere"
    base.mkdir()
    outside.mkdir()
    (base / "link").symlink_to(outside, target_is_directory=True)
    assert confined(base, "board", "set.png") == base / "board" / "set.png"
    with pytest.raises(BadInput, match="outside"):
        confined(base, "link", "set.png")
    with pytest.raises(BadInput, match="path separator"):
        confined(base, "../x")


def test_a_record_naming_set_dotdot_writes_nothing_outside_and_exits_2(tmp_path, capsys):
    results = results_naming_set(tmp_path / "results", "../../../../x")
    out = tmp_path / "a" / "b" / "c" / "out"  # an escape from here would still land inside tmp_path
    before = files_under(tmp_path)
    code = main(["leaderboard", "--results", str(results), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "../../../../x" in err and "set name" in err
    assert files_under(tmp_path) == before  # nothing written, inside --out or outside it


def test_the_same_records_with_a_plain_set_name_write_their_board(tmp_path, capsys):
    # the control: the refusal above comes from the name, not from the hand-made records
    results = results_naming_set(tmp_path / "results", "toy")
    out = tmp_path / "out"
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--no-plots"]) == 0
    assert (out / "synthetic.md").is_file()
    assert all(out in p.parents for p in files_under(tmp_path) - files_under(tmp_path / "results"))


def test_leaderboard_name_with_a_separator_exits_2_before_reading(tmp_path, capsys):
    results = results_naming_set(tmp_path / "results", "toy")
    code = main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "out"), "--name", "../../board"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "leaderboard name" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../../x", "/tmp/saebench-abs-board", "sub/board"])
def test_run_name_that_leaves_the_folder_is_refused_before_any_work(tmp_path, capsys, name):
    from saebench_sanity import config
    from saebench_sanity.harness.run import run

    out = tmp_path / "out"
    toml = tmp_path / "bad.toml"
    toml.write_text(f'[run]\nname = "{name}"\noutput_dir = "{out}"\nsets = ["synth-easy"]\n'
                    f'architectures = ["topk"]\nmodes = ["trained"]\nseeds = [0]\nmetrics = ["reconstruction"]\n')
    code = main(["run", "--config", str(toml)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "name" in err
    assert not out.exists()
    # the same check guards run() itself, for a config object whose validation was bypassed
    cfg = config.from_dict({"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained"],
                                    "seeds": [0], "metrics": ["reconstruction"], "output_dir": str(out)}})
    object.__setattr__(cfg, "name", name)
    with pytest.raises(BadInput, match="run.name"):
        run(cfg)
    assert not out.exists()


def test_a_symlink_planted_at_the_plot_temporary_name_is_not_followed(tmp_path):
    results = results_naming_set(tmp_path / "results", "toy")
    out = tmp_path / "out"
    board = out / "synthetic"
    board.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for planted in (".toy.png.tmp", ".toy.png.tmp-0", ".verdict.png.tmp"):  # the old fixed names
        os.symlink(victim, board / planted)
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 0
    assert victim.read_text() == "precious"
    pngs = [p for p in board.iterdir() if p.suffix == ".png" and not p.is_symlink()]
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    # every file of the board has the mode open() gives under the umask (mkstemp alone gives 0600)
    written = [p for p in files_under(out) if not p.is_symlink()]
    assert {p.stat().st_mode & 0o777 for p in written} == {file_mode()}


def test_an_activation_set_name_cannot_name_a_folder_outside_the_store(tmp_path):
    from saebench_sanity.activations.store import store_dir

    assert store_dir(tmp_path, "smollm2-135m-resid12") == tmp_path / "smollm2-135m-resid12"
    with pytest.raises(BadInput, match="activation set name"):
        store_dir(tmp_path, "../../elsewhere")
