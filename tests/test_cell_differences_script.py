"""scripts/cell-differences.py, the command the docs quote for which cells of two runs (native and
emulated kernels) ended differently: seeds counted per (set, arch, mode) by steps or by a score
beyond the tolerance, records read as the leaderboard reads them."""

import json
import subprocess
import sys
from pathlib import Path

CELLS = Path(__file__).resolve().parents[1] / "scripts" / "cell-differences.py"


def _records(folder: Path, cells: dict[tuple[str, int], tuple[int, float]]) -> Path:
    (folder / "results").mkdir(parents=True)
    for i, ((mode, seed), (steps, ev)) in enumerate(cells.items()):
        record = {"cell": {"set": "s", "arch": "relu", "mode": mode, "seed": seed}, "status": "ok",
                  "training": {"steps": steps},
                  "metrics": {"k": {"name": "reconstruction", "status": "ok", "scores": {"explained_variance": ev}},
                              "e": {"name": "ground_truth", "status": "error", "scores": {}}}}
        (folder / "results" / f"{i}.json").write_text(json.dumps(record))
    return folder


def test_cell_differences_counts_seeds_that_differ_in_steps_or_beyond_the_tolerance(tmp_path):
    a = _records(tmp_path / "a", {("trained", 0): (100, 0.5), ("trained", 1): (100, 0.5), ("untrained", 0): (0, 0.9)})
    b = _records(tmp_path / "b", {("trained", 0): (120, 0.5), ("trained", 1): (100, 0.5 + 1e-9),
                                  ("untrained", 0): (0, 0.9 + 1e-3)})
    out = subprocess.run([sys.executable, str(CELLS), str(a), str(b)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0] == "3 cells in both runs; 2 differ (steps, or a score by more than 1e-06)"
    assert "s/relu/trained" in out[1] and "1 of 2 seeds differ; largest score difference 1.0e-09" in out[1]
    assert "s/relu/untrained" in out[2] and "1 of 1 seeds differ; largest score difference 1.0e-03" in out[2]
    assert out[3].startswith("  s/relu/trained/s0: steps 100 / 120  explained_variance 0.5000 / 0.5000")
    assert out[4].startswith("  s/relu/untrained/s0: steps 0 / 0")
    loose = subprocess.run([sys.executable, str(CELLS), str(a), str(b), "--tol", "1e-2"], check=True,
                           capture_output=True, text=True).stdout
    assert loose.splitlines()[0].endswith("1 differ (steps, or a score by more than 0.01)")
    extra = _records(tmp_path / "c", {("trained", 0): (100, 0.5), ("trained", 5): (100, 0.5)})
    first = subprocess.run([sys.executable, str(CELLS), str(a), str(extra)], check=True, capture_output=True,
                           text=True).stdout.splitlines()[0]
    assert first == "1 cells in both runs; 0 differ (steps, or a score by more than 1e-06); 2 only in the first, 1 only in the second"


def test_cell_differences_ends_with_what_each_runs_cells_trained_on(tmp_path):
    a = _records(tmp_path / "a", {("trained", 0): (100, 0.5), ("trained", 1): (100, 0.5)})
    b = _records(tmp_path / "b", {("trained", 0): (100, 0.5), ("trained", 1): (100, 0.5)})
    kernels = [{"cpu": "AMD EPYC", "aten": "AVX2", "MKL_CBWR": "COMPATIBLE"}, None]
    for i, path in enumerate(sorted((b / "results").glob("*.json"))):
        record = json.loads(path.read_text())
        record["training"].update({"threads": 2 - i, "dtype": "float64", "cpu_kernels": kernels[i]})
        path.write_text(json.dumps(record))
    out = subprocess.run([sys.executable, str(CELLS), str(a), str(b)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[-3:] == ["trained on:", f"  {a}: 2 cells: cpu (kernels not recorded), threads not recorded, float32",
                        f"  {b}: 1 cells: AMD EPYC, AVX2, MKL_CBWR=COMPATIBLE, 2 threads, float64; "
                        "1 cells: cpu (kernels not recorded), 1 thread, float64"]
