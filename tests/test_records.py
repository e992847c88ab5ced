"""Typed result records: every committed record reads as schema version 0 without being rewritten,
new records carry the current schema version, and a wrong type is one line naming the field."""

import glob
import json
import os
from pathlib import Path

import pytest

from saebench_sanity.errors import DataError
from saebench_sanity.harness.store import ResultStore, unseal
from saebench_sanity.records import SCHEMA_VERSION, ResultRecord, parse_record, record_problem

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(glob.glob(str(REPO / "leaderboards" / "results" / "*" / "results" / "*.json")))


def _is_legacy(path: str) -> bool:
    return "schema_version" not in json.loads(Path(path).read_text())


#: a record written before records carried a schema version (a real-board JumpReLU cell), kept
#: here so the legacy path stays tested as regenerations replace the committed ones
LEGACY_FIXTURE = str(REPO / "tests" / "data" / "legacy-record" / "0072ab1d4c486e6125f9ef11.json")
#: committed records written before records carried a schema version (read as version 0), and the fixture
LEGACY = [p for p in COMMITTED if _is_legacy(p)] + [LEGACY_FIXTURE]


def test_every_committed_record_is_complete_legacy_ones_read_as_version_0():
    assert len(COMMITTED) > 100 and _is_legacy(LEGACY_FIXTURE)
    for path in COMMITTED + [LEGACY_FIXTURE]:
        body, why, _ = unseal(json.loads(Path(path).read_text()))
        assert why is None, path
        assert record_problem(body, complete=True) is None, path
        rec = parse_record(body)
        if path in LEGACY:
            assert rec.schema_version == 0 and rec.is_legacy
        else:  # regenerated since: the current schema
            assert rec.schema_version == SCHEMA_VERSION and not rec.is_legacy, path
        assert rec.cell.set and rec.status in ("ok", "failed")


def test_a_legacy_record_is_read_as_it_is_and_never_rewritten(tmp_path):
    src = Path(LEGACY_FIXTURE)
    store = ResultStore(tmp_path)
    store.results.mkdir(parents=True)
    dest = store.result_path(src.stem)
    dest.write_bytes(src.read_bytes())
    os.utime(dest, ns=(1_000_000_000, 1_000_000_000))
    rec = store.load_result(src.stem)
    assert rec is not None and "schema_version" not in rec
    store.write_result(src.stem, rec)  # what a run does with a fully cached cell's unchanged record
    assert dest.read_bytes() == src.read_bytes() and dest.stat().st_mtime_ns == 1_000_000_000


def test_a_new_record_carries_the_schema_version_and_round_trips(tmp_path):
    body = unseal(json.loads(Path(COMMITTED[0]).read_text()))[0]
    store = ResultStore(tmp_path)
    body = {**body, "metrics": {k: v for k, v in list(body["metrics"].items())[:2]}}  # changed: written anew
    store.write_result(body["key"], body)
    stored = json.loads(store.result_path(body["key"]).read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and "sha256" in stored
    rec = parse_record(store.load_result(body["key"]))
    assert rec.schema_version == SCHEMA_VERSION and not rec.is_legacy
    again = ResultRecord.model_validate(rec.model_dump(mode="json"))
    assert again == rec
    for mkey, entry in body["metrics"].items():
        assert rec.metrics[mkey].scores == entry.get("scores")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["cell"].update(seed="1"), "'cell.seed' is '1', not an integer"),
    (lambda r: r["cell"].update(seed=True), "'cell.seed' is True, not an integer"),
    (lambda r: r.update(status="done"), "'status' is 'done', not 'ok' or 'failed'"),
    (lambda r: r["training"].update(steps=12.5), "'training.steps' is 12.5, not an integer"),
    (lambda r: next(iter(r["metrics"].values())).update(status="fine"), "not 'ok', 'skipped' or 'error'"),
    (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), "newer than this saebench-sanity reads"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_it_and_the_store_reads_it_as_damaged(tmp_path, edit, message):
    body = json.loads(json.dumps(unseal(json.loads(Path(COMMITTED[0]).read_text()))[0]))
    edit(body)
    assert message in record_problem(body)
    with pytest.raises(DataError, match="not a result record"):
        parse_record(body)
    store = ResultStore(tmp_path)
    store.results.mkdir(parents=True)
    store.result_path(body["key"]).write_text(json.dumps(body))  # legacy (no hash): only the types catch it
    rec, why = store.read_result(body["key"])
    assert rec is None and message in why and "\n" not in why


def test_a_partial_record_reads_but_is_not_complete():
    assert record_problem({"status": "ok"}) is None
    assert "'key' is missing" in record_problem({"status": "ok"}, complete=True)


def test_the_committed_synthetic_records_are_the_cells_the_default_suite_plans_now():
    """A change of the default suite that gives cells new identities (a budget, a target L0, a
    set's recipe) must come with their records: the committed synthetic run manifest lists
    exactly the cells that `saebench run --sets <its sets>` plans today, and every one has its
    record. (The real boards: the next test.)"""
    from saebench_sanity.cli import only_sets
    from saebench_sanity.config import embedded
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.registry import get_registry

    folder = REPO / "leaderboards" / "results" / "synthetic"
    run = json.loads((folder / "run.json").read_text())
    plan = build_plan(only_sets(embedded("default"), run["config"]["sets"]), get_registry())
    assert plan.cell_keys == run["cell_keys"]
    assert {p.stem for p in (folder / "results").glob("*.json")} == set(plan.cell_keys)


@pytest.mark.parametrize("suite, folder, set_name", [("default", "real", "smollm2-135m-resid12"),
                                                     ("real-resid24", "real-resid24", "smollm2-135m-resid24")])
def test_the_committed_real_records_are_the_cells_their_suite_plans_now(tmp_path, monkeypatch, suite, folder, set_name):
    """The same guard for the real boards, without building a store (CI has none): a real set's
    identity is its recipe (``activations.store.identity``), and the committed fingerprint
    (docs/fingerprints/) carries that recipe, so a store folder holding only a manifest made of it
    plans the cells a real build would. The data checks that planning runs on a built set
    (``validate_set``) need the shards and are skipped here; every key the plan derives from the
    set comes from the recipe."""
    from saebench_sanity.activations.base import stable_hash
    from saebench_sanity.activations.store import identity, identity_hash
    from saebench_sanity.cli import only_sets
    from saebench_sanity.config import embedded
    from saebench_sanity.harness import plan as plan_module
    from saebench_sanity.registry import get_registry

    fingerprint = json.loads((REPO / "docs" / "fingerprints" / f"{set_name}.json").read_text())
    manifest = {k: v for k, v in fingerprint["recipe"].items() if k != "identity_format"}
    store = tmp_path / "activations" / set_name
    store.mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps(manifest))
    assert identity(manifest) == fingerprint["recipe"]
    assert identity_hash(store) == stable_hash(fingerprint["recipe"]) == fingerprint["identity_sha256"]
    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(plan_module, "validate_set", lambda *args, **kwargs: None)

    results = REPO / "leaderboards" / "results" / folder
    run = json.loads((results / "run.json").read_text())
    assert run["config"]["sets"] == [set_name]
    plan = plan_module.build_plan(only_sets(embedded(suite), run["config"]["sets"]), get_registry())
    assert plan.cell_keys == run["cell_keys"]
    assert {p.stem for p in (results / "results").glob("*.json")} == set(plan.cell_keys)
