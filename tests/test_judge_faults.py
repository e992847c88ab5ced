"""A hostile or broken judge endpoint, served from a loopback HTTP server in a thread (one fault
mode per test): the HTTP judge stays inside its deadline, its reply cap and its time budget, never
lets the key reach a message or a record, keeps answers of different endpoints apart, and a judge
that cannot answer becomes a recorded skip that the next run retries.

No model is loaded: the server answers with a fixed string. Each test is bounded by the limits it
checks (deadlines of about a second, budgets of a few seconds); the elapsed-time assertions have
a wide margin against the unbounded behaviour they rule out (tens of seconds to an hour)."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from types import SimpleNamespace

import pytest

from saebench_sanity.judges.base import CallableJudge, JudgeBudgetExceeded, JudgeError, redact
from saebench_sanity.judges.openai_compatible import OpenAICompatibleJudge, parse_retry_after, public_url
from saebench_sanity.judges.server import ChatServer

MSG = [{"role": "user", "content": "Which texts match? 1. a  2. b"}]
KEY_ENV = "SAEBENCH_TEST_JUDGE_KEY"
SECRET = "sk-test-0123456789abcdefSECRET"


def fixed(answer: str):
    return lambda messages, max_tokens: answer


def judge_for(srv: ChatServer, **kw) -> OpenAICompatibleJudge:
    kw = {"timeout": 5.0, "max_retries": 0, "backoff": 0.01, "cache": False, "api_key_env": None, **kw}
    return OpenAICompatibleJudge(base_url=srv.base_url, model="m", **kw)


@pytest.mark.parametrize("fault", ["trickle", "trickle_head"])
def test_a_trickling_reply_is_cut_at_the_deadline(fault):
    # 0.1 s per byte: every socket read returns in time, the whole ~300-byte reply would take ~30 s
    with ChatServer(fixed("the marked tokens are numbers"), always=fault, fault_sleep=1.0) as srv:
        judge = judge_for(srv, timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(JudgeError, match=r"no complete reply within the 1 s deadline") as err:
            judge.complete(MSG, 8)
        elapsed = time.monotonic() - t0
    assert "\n" not in str(err.value)
    assert srv.trickled < 100  # the client hung up after ~10 of the reply's ~300 bytes
    assert elapsed < 5.0  # bounded by the 1 s deadline (+ teardown), not by the ~25 s body


def test_a_deadline_is_retried_and_a_retry_that_answers_in_time_succeeds():
    with ChatServer(fixed("numbers"), faults=["trickle"], fault_sleep=1.0) as srv:
        judge = judge_for(srv, timeout=1.0, max_retries=1)
        assert judge.complete(MSG, 8) == "numbers"
        assert len(srv.requests) == 2


@pytest.mark.parametrize("fault", ["huge", "huge_stream"])
def test_a_huge_reply_is_refused_at_the_cap_without_reading_it(fault):
    cap = 64 * 1024
    with ChatServer(fixed("x"), always=fault, huge_bytes=16 << 20) as srv:
        judge = judge_for(srv, max_reply_bytes=cap, max_retries=3)
        tracemalloc.start()
        try:
            with pytest.raises(JudgeError, match=r"65536-byte cap") as err:
                judge.complete(MSG, 8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2 << 20  # reading the 16 MB body would allocate it (at least) once
    assert len(srv.requests) == 1  # a cap is not retried: the server would send it again
    assert "\n" not in str(err.value)


def test_retry_after_60_gives_up_within_the_budget_instead_of_sleeping():
    with ChatServer(fixed("x"), always="retry_after_60") as srv:
        judge = judge_for(srv, max_retries=4)
        t0 = time.monotonic()
        with judge.budget(3.0, what="autointerp"), pytest.raises(JudgeBudgetExceeded) as err:
            judge.complete(MSG, 8)
        elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert "HTTP 429" in msg and "due in 60 s" in msg and "budget of autointerp" in msg
    assert len(srv.requests) == 1 and elapsed < 3.0  # no 60 s sleep, not even the 3 s budget


def test_retry_after_is_capped_by_max_retry_after_without_a_budget():
    with ChatServer(fixed("fine"), faults=["retry_after_60", "retry_after_60"]) as srv:
        judge = judge_for(srv, max_retries=2, max_retry_after=0.05)
        t0 = time.monotonic()
        assert judge.complete(MSG, 8) == "fine"
        assert time.monotonic() - t0 < 5.0 and len(srv.requests) == 3


def test_a_budget_bounds_many_prompts_and_many_retries_together():
    # every request times out after 0.5 s; 8 prompts x 5 attempts unbudgeted would take > 20 s
    with ChatServer(fixed("x"), always="timeout", fault_sleep=30.0) as srv:
        judge = judge_for(srv, timeout=0.5, max_retries=4, concurrency=2)
        t0 = time.monotonic()
        with judge.budget(2.0, what="autointerp"), pytest.raises(JudgeBudgetExceeded, match="budget"):
            judge.complete_many([MSG] * 8, 8)
        elapsed = time.monotonic() - t0
    assert elapsed < 5.0


@pytest.mark.parametrize("fault", ["echo", "echo200"])
def test_an_error_page_that_echoes_the_headers_never_puts_the_key_in_the_message(fault, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ChatServer(fixed("x"), always=fault) as srv:
        judge = judge_for(srv, api_key_env=KEY_ENV, max_retries=1)
        with pytest.raises(JudgeError) as err:
            judge.complete(MSG, 8)
        assert srv.requests  # the request went out with the key...
    msg = str(err.value)
    assert SECRET not in msg and "Bearer" not in msg and "<li>" not in msg  # ...and nothing of the page came back
    assert ("HTTP 502" in msg) if fault == "echo" else ("malformed reply" in msg)


def test_an_answer_that_echoes_the_key_is_stored_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ChatServer(fixed(f"your key is {SECRET}")) as srv:
        judge = judge_for(srv, api_key_env=KEY_ENV, cache=str(tmp_path / "answers.sqlite"))
        assert judge.complete(MSG, 8) == "your key is [redacted]"
    assert SECRET.encode() not in (tmp_path / "answers.sqlite").read_bytes()


def test_redact_removes_credentials_and_the_configured_key():
    text = ("Authorization: Bearer abcdefgh12345678; x-api-key: k-998877; api_key=hunter22hunter; "
            "https://user:pw@host/v1 and the word token stays")
    out = redact(text + " mykey-42-xyz", ["mykey-42-xyz"])
    for secret in ("abcdefgh12345678", "k-998877", "hunter22hunter", "user:pw", "mykey-42-xyz"):
        assert secret not in out
    assert "the word token stays" in out and public_url("https://u:p@h:8/v1?key=s") == "https://h:8/v1"


def test_two_endpoints_serving_one_model_name_do_not_share_answers(tmp_path):
    cache = str(tmp_path / "answers.sqlite")
    with ChatServer(fixed("from A")) as a, ChatServer(fixed("from B")) as b:
        ja, jb = judge_for(a, cache=cache), judge_for(b, cache=cache)
        assert ja.identity == jb.identity  # same plugin and model name
        assert ja.complete(MSG, 8) == "from A"
        assert jb.complete(MSG, 8) == "from B" and jb.requests_sent == 1
        again = judge_for(a, cache=cache)  # the same endpoint again: answered from the cache
        assert again.complete(MSG, 8) == "from A" and again.requests_sent == 0


def test_complete_many_stops_the_other_prompts_when_one_fails():
    # two requests hang for 30 s, the third gets an oversized reply (not retried): the batch fails
    # at once and the hanging requests are cut, instead of waiting out their 20 s deadlines
    with ChatServer(fixed("ok"), faults=["timeout", "timeout", "huge"], fault_sleep=30.0) as srv:
        judge = judge_for(srv, timeout=20.0, concurrency=3, max_reply_bytes=1024)
        t0 = time.monotonic()
        with pytest.raises(JudgeError, match="1024-byte cap"):
            judge.complete_many([MSG] * 3, 8)
        assert time.monotonic() - t0 < 10.0


def test_the_budget_applies_to_any_judge_and_ends_with_its_block():
    judge = CallableJudge(lambda m, k: "fine")
    with judge.budget(0.05, what="autointerp"):
        time.sleep(0.06)
        with pytest.raises(JudgeBudgetExceeded, match="0.05 s time budget of autointerp"):
            judge.complete(MSG, 4)
    assert judge.complete(MSG, 4) == "fine" and judge.remaining() == float("inf")


def test_parse_retry_after_reads_seconds_and_dates():
    assert parse_retry_after("60") == 60.0 and parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


# -- through the harness: a judge that cannot answer is a recorded, retried skip ------------------

def judged_metric(ctx, base_url: str, budget: float = 5.0):
    """A metric that asks an ``openai_compatible`` judge one question within a budget."""
    judge = OpenAICompatibleJudge(base_url, "m", api_key_env=KEY_ENV, timeout=2.0, max_retries=1, backoff=0.01,
                                  cache=False)
    with judge.budget(budget, what="judged"):
        return {"length": float(len(judge.complete(MSG, 8)))}


class JudgedPlugin:
    __name__ = "tests-judged-plugin"

    from saebench_sanity import hookimpl

    @hookimpl
    def saebench_register_metrics(self, register):
        from saebench_sanity.metrics.base import MetricSpec, ScoreInfo

        register(MetricSpec(name="judged", description="asks an HTTP judge (tests)", factory=judged_metric,
                            scores={"length": ScoreInfo(direction=None)}))


def test_a_failing_judge_is_a_recorded_skip_without_the_key_and_the_next_run_retries(tmp_path, monkeypatch):
    from conftest import FakePlugin

    from saebench_sanity import config
    from saebench_sanity.architectures import checkpoint
    from saebench_sanity.harness import executor
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.harness.store import ResultStore
    from saebench_sanity.registry import Registry

    monkeypatch.setenv(KEY_ENV, SECRET)
    # no training and no sae-lens import: the cell arrives trained, its checkpoint loads as a stub
    stub = SimpleNamespace(cfg=SimpleNamespace(metadata=None))  # the judged metric never reads the SAE
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path, **kw: stub)
    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin(), JudgedPlugin()])
    info = {"steps": 0, "seconds": 0.0, "converged": True}

    def run(base_url):
        cfg = config.from_dict({"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained"],
                                        "seeds": [0], "metrics": ["judged"], "output_dir": str(tmp_path / "out")},
                                "metrics": {"judged": {"base_url": base_url}},
                                "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}})
        plan = build_plan(cfg, reg)
        store = ResultStore(cfg.output_dir)
        cell, aset = plan.cells[0], plan.sets["tiny-gauss"]
        out = executor.run_cell(cell, plan.metrics, aset, aset.eval_activations, store, reg, trained=dict(info))
        return out, store.result_path(cell.key)

    with ChatServer(fixed("x"), always="echo") as srv:
        url = srv.base_url
        out, path = run(url)
    entry = next(iter(json.loads(path.read_text())["metrics"].values()))
    assert entry["status"] == "skipped" and entry["transient"] is True
    assert "HTTP 502" in entry["reason"] and "judged" not in entry.get("error", "")
    assert SECRET not in path.read_text()
    summary = executor.summarize([out])
    assert summary["metric_skipped"] == 1 and summary["metric_errors"] == 0
    assert [name for name, _ in summary["skip_reasons"]] == ["judged"]

    # the endpoint is back (same URL, same metric key): the transient skip is retried, not cached
    host, port = url.split("//")[1].split("/")[0].split(":")
    with ChatServer(fixed("four"), host=host, port=int(port)) as back:
        out, path = run(back.base_url)
    entry = next(iter(json.loads(path.read_text())["metrics"].values()))
    assert entry["status"] == "ok" and entry["scores"] == {"length": 4.0}
    assert out.metrics["judged"]["cached"] is False


def test_autointerp_budget_is_validated():
    from saebench_sanity.errors import ConfigError
    from saebench_sanity.metrics.autointerp import check_budget_param

    assert check_budget_param(None) is None and check_budget_param(30) == 30.0
    for bad in (0, -1, float("inf"), float("nan"), "60", True):
        with pytest.raises(ConfigError, match="budget"):
            check_budget_param(bad)


def test_watchdog_threads_do_not_accumulate():
    before = threading.active_count()
    with ChatServer(fixed("ok")) as srv:
        judge = judge_for(srv)
        for _ in range(5):
            judge.complete(MSG, 4)
    time.sleep(0.1)
    assert threading.active_count() <= before + 1


def test_autointerp_runs_its_judge_inside_the_budget(monkeypatch):
    """The metric's glue: examples are built, then every judge call shares ``budget`` seconds (a
    judge that needs 0.2 s per answer cannot answer 8 prompts in 0.5 s); the default budget
    applies when none is given."""
    from saebench_sanity.metrics import autointerp as A
    from saebench_sanity.metrics.base import MetricContext
    from saebench_sanity.metrics.lm import LMHandle

    examples = [A.LatentExamples(i, ["<<a>> b"], ["a c"], ["d e"]) for i in range(4)]
    monkeypatch.setattr(A, "build_examples", lambda *args, **kw: examples)
    seen = []

    def slow(messages, max_tokens):
        seen.append(judge.remaining())
        time.sleep(0.2)
        return "1"

    judge = CallableJudge(slow, model="slow")
    ctx = MetricContext(None, None, None, lm=LMHandle(None, None, "resid_post.0", identity="no-model"), judge=judge)
    with pytest.raises(JudgeBudgetExceeded, match="0.5 s time budget of autointerp"):
        A.autointerp_scores(ctx, budget=0.5)
    assert 1 <= len(seen) <= 4 and judge.remaining() == float("inf")
    seen.clear()
    out = A.autointerp_scores(ctx)  # default budget: 8 answers in 1.6 s is well inside it
    assert len(seen) == 8 and all(A.DEFAULT_BUDGET - 5 < r <= A.DEFAULT_BUDGET for r in seen)
    assert out["parse_failure_rate"] == 0.0
