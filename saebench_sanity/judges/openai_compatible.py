"""``openai_compatible`` judge: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI, vLLM, Ollama (``http://localhost:11434/v1``), OpenRouter, llama.cpp's server
or this package's loopback server (``judges.server``). Plain stdlib ``urllib`` — no client
library needed for one POST route.

* key: read from the environment variable ``api_key_env`` (sent as a Bearer token when set;
  local servers need none);
* timeouts: ``timeout`` seconds per request;
* retries: up to ``max_retries`` after a timeout, a refused connection, HTTP 429 or 5xx, or a
  reply that is not the chat-completions JSON, sleeping ``backoff * 2**attempt`` seconds (or the
  server's ``Retry-After``) in between; then a one-line :class:`JudgeError`;
* other 4xx (bad key, unknown model) fail at once: retrying cannot help;
* concurrency: at most ``concurrency`` requests in flight (``complete_many`` uses a thread pool);
* cache: answers are stored on disk by (identity, messages, max_tokens) — a re-run sends nothing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from saebench_sanity.errors import ConfigError
from saebench_sanity.judges.base import Judge, JudgeError, Messages
from saebench_sanity.judges.cache import PromptCache

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleJudge(Judge):
    plugin = "openai_compatible"

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 4, backoff: float = 1.0, concurrency: int = 4, cache: str | bool | None = None,
                 temperature: float = 0.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"openai_compatible judge: base_url {base_url!r} must start with http:// or https://")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ConfigError("openai_compatible judge: need concurrency >= 1, max_retries >= 0, timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.concurrency, self.temperature = int(concurrency), float(temperature)
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self.cache = None if cache is False else PromptCache(None if cache in (None, True) else cache)
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    # -- one request -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> str:
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers=self._headers(), method="POST")
        with self._count_lock:
            self.requests_sent += 1
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            raw = resp.read()
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Malformed(raw[:80]) from exc
        if not isinstance(content, str):
            raise _Malformed(raw[:80])
        return content

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        key = {"judge": self.identity, "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2 ** attempt)
            try:
                with self._slots:
                    answer = self._post(body)
                if self.cache is not None:
                    self.cache.put(key, answer)
                return answer
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRYABLE_STATUS:
                    raise JudgeError(f"judge {self.identity} at {self.base_url}: HTTP {exc.code} {exc.reason}; "
                                     f"check the model name and the key in ${self.api_key_env}") from None
                last = f"HTTP {exc.code}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after:
                    try:
                        wait = max(wait, min(float(retry_after), 60.0))
                    except ValueError:
                        pass
            except (TimeoutError, socket.timeout):
                last = f"timeout after {self.timeout:g} s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = f"timeout after {self.timeout:g} s"
                else:
                    last = f"cannot connect ({exc.reason})"
            except (ConnectionError, OSError) as exc:
                last = f"connection error ({type(exc).__name__})"
            except _Malformed as exc:
                last = f"malformed reply {exc.args[0]!r}"
            if attempt < self.max_retries:
                time.sleep(wait)
        raise JudgeError(f"judge {self.identity} at {self.base_url} failed after {self.max_retries + 1} attempts "
                         f"(last: {last}); check that the endpoint is up or use --judge local")

    def complete_many(self, prompts: Sequence[Messages], max_tokens: int = 64) -> list[str]:
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self.complete(m, max_tokens) for m in prompts]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self.complete(m, max_tokens), prompts))


class _Malformed(Exception):
    pass


def build(base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", **kwargs: Any) -> OpenAICompatibleJudge:
    """Factory of the registered ``openai_compatible`` judge."""
    return OpenAICompatibleJudge(base_url=base_url, model=model, api_key_env=api_key_env, **kwargs)
