"""Judges: the OpenAI-compatible HTTP judge against a real loopback server that serves a tiny
transformers model through the chat-completions schema, with injected failures; the local judge;
the on-disk cache."""

from __future__ import annotations

import socket

import pytest
import torch

from saebench_sanity.judges.base import JudgeError
from saebench_sanity.judges.local import LocalJudge, chat_generate, tiny_random_lm
from saebench_sanity.judges.openai_compatible import OpenAICompatibleJudge
from saebench_sanity.judges.server import ChatServer, model_generate

MSG = [{"role": "system", "content": "You label texts."}, {"role": "user", "content": "Is 'def f(x):' Python? Answer:"}]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_random_lm(seed=1)


def _judge(srv, tmp_path, **kw):
    kw = {"timeout": 5.0, "max_retries": 2, "backoff": 0.01, "cache": str(tmp_path / "c.sqlite"), **kw}
    return OpenAICompatibleJudge(base_url=srv.base_url, model="tiny", api_key_env=None, **kw)


def test_judges_http_judge_answers_with_the_served_model(tiny, tmp_path):
    model, tok = tiny
    expected = chat_generate(model, tok, MSG, 6)
    with ChatServer(model_generate(model, tok)) as srv:
        judge = _judge(srv, tmp_path)
        assert judge.complete(MSG, max_tokens=6) == expected
        assert srv.requests[0]["messages"] == MSG and srv.requests[0]["model"] == "tiny"
        assert judge.identity == "openai_compatible:tiny"


def test_judges_http_cache_makes_a_rerun_send_nothing(tiny, tmp_path):
    with ChatServer(model_generate(*tiny)) as srv:
        first = _judge(srv, tmp_path).complete(MSG, 4)
        again = _judge(srv, tmp_path)  # a new process would open the same file
        assert again.complete(MSG, 4) == first
        assert len(srv.requests) == 1 and again.requests_sent == 0 and again.cache.hits == 1


@pytest.mark.parametrize("fault", ["500", "429", "malformed", "timeout"])
def test_judges_http_retries_a_transient_failure_then_answers(tiny, tmp_path, fault):
    model, tok = tiny
    with ChatServer(model_generate(model, tok), faults=[fault], fault_sleep=1.0) as srv:
        judge = _judge(srv, tmp_path, cache=False, timeout=0.4)
        assert judge.complete(MSG, 4) == chat_generate(model, tok, MSG, 4)
        assert len(srv.requests) == 2


def test_judges_http_persistent_failure_is_a_one_line_error(tiny, tmp_path):
    with ChatServer(model_generate(*tiny), faults=["500", "timeout", "500"], fault_sleep=1.0) as srv:
        judge = _judge(srv, tmp_path, cache=False, timeout=0.4)
        with pytest.raises(JudgeError) as err:
            judge.complete(MSG, 4)
        assert "failed after 3 attempts" in str(err.value) and "\n" not in str(err.value)
        assert len(srv.requests) == 3


def test_judges_http_endpoint_down_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAICompatibleJudge(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, max_retries=1, backoff=0.01, cache=False)
    with pytest.raises(JudgeError, match="cannot connect"):
        judge.complete(MSG, 4)


def test_judges_http_complete_many_keeps_order_under_the_concurrency_limit(tiny, tmp_path):
    model, tok = tiny
    prompts = [[{"role": "user", "content": f"number {i}"}] for i in range(5)]
    real = model_generate(model, tok)

    def tagged(messages, max_tokens):  # the real model's answer plus which prompt it answers
        return f"{real(messages, max_tokens)}|{messages[-1]['content']}"

    with ChatServer(tagged) as srv:
        out = _judge(srv, tmp_path, concurrency=3, cache=False).complete_many(prompts, 3)
    assert out == [f"{chat_generate(model, tok, p, 3)}|number {i}" for i, p in enumerate(prompts)]
    assert len(set(out)) == 5  # distinct answers: a reordering would fail


def test_judges_registered_and_built_from_the_registry(tiny, tmp_path):
    from saebench_sanity.registry import Registry

    reg = Registry(load_entry_points=False)
    assert {"local", "openai_compatible"} <= set(reg.names("judge"))
    j = reg.get("judge", "openai_compatible").build(base_url="http://127.0.0.1:1/v1", model="x", cache=False)
    assert j.identity == "openai_compatible:x"
    local = LocalJudge(loaded=tiny)
    assert local.complete(MSG, 3) == chat_generate(*tiny, MSG, 3)
