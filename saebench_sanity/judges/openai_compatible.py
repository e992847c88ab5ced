"""``openai_compatible`` judge: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI, vLLM, Ollama (``http://localhost:11434/v1``), OpenRouter, llama.cpp's server
or this package's loopback server (``judges.server``). Plain stdlib ``http.client``: one POST
route needs no client library, and a deadline over the whole exchange needs the socket.

* key: read from the environment variable ``api_key_env`` (sent as a Bearer token when set;
  local servers need none);
* deadline: ``timeout`` seconds per request for everything (connect, send, headers, whole body),
  enforced by a watchdog that shuts the socket down: per-read socket timeouts alone let a server
  that trickles one byte a second hold a request forever;
* size cap: a reply larger than ``max_reply_bytes`` is refused (read in chunks, stopped at the cap);
* retries: up to ``max_retries`` after a deadline, a refused connection, HTTP 408/409/425/429/5xx,
  or a reply that is not the chat-completions JSON, sleeping ``backoff * 2**attempt`` seconds or
  the server's ``Retry-After`` (at most ``max_retry_after``) in between; then one-line
  :class:`JudgeError`;
* budget: inside ``with judge.budget(seconds)`` (the autointerp metric opens one), a request's
  deadline never passes the budget's end, and a retry whose wait would not fit in what is left
  gives up at once (:class:`JudgeBudgetExceeded`) instead of sleeping the budget away;
* other 4xx (bad key, unknown model) and oversized replies fail at once: retrying cannot help;
* errors name the status and the byte count, never the reply's text (a proxy error page may echo
  the request headers, key included); anything credential-like is redacted from every message;
* concurrency: at most ``concurrency`` requests in flight (``complete_many`` uses a thread pool
  and stops the others when one prompt fails);
* cache: answers are stored on disk by (identity, endpoint, messages, max_tokens, temperature):
  a re-run sends nothing, and two endpoints serving one model name never share answers.

The retry loop is written out rather than taken from tenacity: it must cap each wait by the
remaining budget and give up early when the wait does not fit, which is most of its logic.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import math
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from http import HTTPStatus
from typing import Any, Sequence

from saebench_sanity.errors import ConfigError
from saebench_sanity.judges.base import Judge, JudgeBudgetExceeded, JudgeError, Messages, redact
from saebench_sanity.judges.cache import PromptCache

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
#: a chat completion of a few hundred tokens is a few KB; 1 MiB leaves room for verbose servers
MAX_REPLY_BYTES = 1 << 20
MAX_RETRY_AFTER = 60.0
_CHUNK = 64 * 1024
_WATCH_TICK = 0.05  # seconds between the watchdog's looks at the clock


class _Failure(Exception):
    """One failed attempt. ``reason`` is in our words (never the server's text)."""

    def __init__(self, reason: str, retry: bool = True, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.retry_after = reason, retry, retry_after


class _Watchdog:
    """Shuts a connection's socket down at ``deadline`` (monotonic) or when ``stop`` is set, which
    wakes a blocked connect, TLS handshake or read at once; ``fired`` tells the caller why the
    exchange ended. It watches ``conn.sock`` from before the connect (http.client sets it before
    the TLS handshake) and remembers it (http.client drops ``conn.sock`` once a closing response
    owns the socket); :meth:`track` hands it the socket explicitly as well."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float, stop: threading.Event) -> None:
        self.conn, self.deadline, self.stop = conn, deadline, stop
        self.fired = False
        self._sock: socket.socket | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="judge-deadline", daemon=True)
        self._thread.start()

    def track(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self._sock = sock

    def _pause(self) -> float:
        return _WATCH_TICK if self.fired else min(_WATCH_TICK, max(0.0, self.deadline - time.monotonic()))

    def _watch(self) -> None:
        while not self._done.wait(self._pause()):
            self.track(self.conn.sock)
            if self.fired or time.monotonic() >= self.deadline or self.stop.is_set():
                self.fired = True  # and keep shutting down whatever socket a connect still makes
                if self._sock is not None:
                    try:
                        self._sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def done(self) -> None:
        self._done.set()
        self._thread.join()


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may be shown and stored."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{p.path}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable; never negative."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"openai_compatible judge: {name} = {value!r} must be a finite number "
                          f"{'>= 0' if allow_zero else '> 0'}")
    return float(value)


class OpenAICompatibleJudge(Judge):
    plugin = "openai_compatible"

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 4, backoff: float = 1.0, concurrency: int = 4, cache: str | bool | None = None,
                 temperature: float = 0.0, max_reply_bytes: int = MAX_REPLY_BYTES,
                 max_retry_after: float = MAX_RETRY_AFTER) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"openai_compatible judge: base_url {base_url!r} must start with http:// or https://")
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(f"openai_compatible judge: base_url {public_url(base_url)!r} has a malformed port") from None
        if not parts.hostname:
            raise ConfigError(f"openai_compatible judge: base_url {base_url!r} names no host")
        for name, value in (("concurrency", concurrency), ("max_retries", max_retries), ("max_reply_bytes", max_reply_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_retries" else 1):
                raise ConfigError(f"openai_compatible judge: {name} = {value!r} must be an integer "
                                  f"{'>= 0' if name == 'max_retries' else '>= 1'}")
        self.base_url = base_url.rstrip("/")
        self._parts = parts
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = _positive("timeout", timeout)
        self.backoff = _positive("backoff", backoff, allow_zero=True)
        self.max_retry_after = _positive("max_retry_after", max_retry_after, allow_zero=True)
        self.temperature = _positive("temperature", temperature, allow_zero=True)
        self.max_retries, self.concurrency, self.max_reply_bytes = max_retries, concurrency, max_reply_bytes
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self.cache = None if cache is False else PromptCache(None if cache is None or cache is True else cache)
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The base URL as it may be shown (no user info or query)."""
        return public_url(self.base_url)

    # -- one request -----------------------------------------------------------------------------
    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, str]:
        """``(connection, request target)``, through the proxy of ``*_proxy`` environment
        variables when one applies (as urllib does)."""
        p = self._parts
        path = (p.path or "") + "/chat/completions" + (f"?{p.query}" if p.query else "")
        https = p.scheme == "https"
        proxy = urllib.request.getproxies().get(p.scheme)
        if proxy and not urllib.request.proxy_bypass(p.hostname or ""):
            pp = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            # a proxy variable naming no host (pp.hostname None) fails inside http.client as before
            proxy_host: Any = pp.hostname
            conn: http.client.HTTPConnection
            if https:  # CONNECT tunnel through the proxy, TLS to the endpoint
                conn = http.client.HTTPSConnection(proxy_host, pp.port, timeout=timeout)
                conn.set_tunnel(p.hostname or "", p.port)
                return conn, path
            conn = http.client.HTTPConnection(proxy_host, pp.port, timeout=timeout)
            return conn, f"{p.scheme}://{p.netloc.rsplit('@', 1)[-1]}{path}"
        cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
        return cls(p.hostname or "", p.port, timeout=timeout), path  # __init__ refused a URL without a host

    def _read_capped(self, resp: http.client.HTTPResponse) -> bytes:
        declared = resp.getheader("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > self.max_reply_bytes:
            raise _Failure(f"reply of {int(declared)} bytes exceeds the {self.max_reply_bytes}-byte cap (max_reply_bytes)",
                           retry=False)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = resp.read1(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self.max_reply_bytes:
                raise _Failure(f"reply exceeds the {self.max_reply_bytes}-byte cap (max_reply_bytes); stopped reading",
                               retry=False)
            chunks.append(chunk)

    def _post(self, payload: bytes, deadline: float, stop: threading.Event) -> str:
        """One POST with everything inside ``deadline`` (monotonic). Returns the message content
        or raises :class:`_Failure`."""
        span = deadline - time.monotonic()
        if span <= 0:
            raise _Failure("no time left for a request")
        conn, target = self._connection(min(span, self.timeout))
        with self._count_lock:
            self.requests_sent += 1
        dog = _Watchdog(conn, deadline, stop)
        resp = None
        try:
            conn.connect()
            dog.track(conn.sock)
            conn.request("POST", target, body=payload, headers=self._headers())
            resp = conn.getresponse()
            status, retry_after = resp.status, resp.getheader("Retry-After")
            raw = self._read_capped(resp)
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - our words only: the text may carry the server's
            if dog.fired:
                raise _Failure("stopped" if stop.is_set() else f"no complete reply within the {span:.3g} s deadline") from None
            if isinstance(exc, (TimeoutError, socket.timeout)):
                raise _Failure(f"timeout after {min(span, self.timeout):.3g} s") from None
            if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
                raise _Failure(f"cannot connect ({type(exc).__name__})") from None
            raise _Failure(f"connection error ({type(exc).__name__})") from None
        finally:
            dog.done()
            if resp is not None:  # the response holds its own reference to the socket
                resp.close()
            conn.close()
        if dog.fired:  # a read cut short by the watchdog can look like a complete close-delimited body
            raise _Failure("stopped" if stop.is_set() else f"no complete reply within the {span:.3g} s deadline")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "unknown status"
        if status in RETRYABLE_STATUS:
            raise _Failure(f"HTTP {status} {phrase}", retry_after=parse_retry_after(retry_after))
        if status != 200:
            raise _Failure(f"HTTP {status} {phrase}; check the model name and the key in ${self.api_key_env}", retry=False)
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise _Failure(f"malformed reply ({len(raw)} bytes, not chat-completions JSON)")
        return content

    # -- retries, budget, cache ----------------------------------------------------------------
    def _error(self, text: str, cls: type[JudgeError] = JudgeError) -> JudgeError:
        return cls(redact(f"judge {self.identity} at {self.endpoint}: {text}", [self._key()]))

    def cache_key(self, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        """What an answer is cached under: the endpoint is part of it (by its shown URL and a hash
        of the full one, so URLs differing only in query or user info never share answers)."""
        return {"judge": self.identity, "endpoint": self.endpoint,
                "endpoint_sha256": hashlib.sha256(self.base_url.encode()).hexdigest()[:16],
                "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}

    def _complete(self, messages: list[dict[str, str]], max_tokens: int, stop: threading.Event | None = None) -> str:
        stop = stop or threading.Event()
        key = self.cache_key(messages, max_tokens)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        payload = json.dumps({"model": self.model, "messages": messages, "max_tokens": max_tokens,
                              "temperature": self.temperature}).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            self._check(attempt, last)
            if stop.is_set():
                raise self._error("stopped: another request of the batch failed")
            left = self.remaining()
            if not self._slots.acquire(timeout=None if math.isinf(left) else left):
                raise self._error(f"the {self._budget_seconds:g} s time budget of {self._budget_what} ran out "
                                  f"waiting for a free request slot", JudgeBudgetExceeded)
            failed: _Failure | None = None
            try:
                answer = self._post(payload, time.monotonic() + min(self.timeout, self.remaining()), stop)
            except _Failure as failure:
                failed = failure
            finally:
                self._slots.release()
            if failed is None:
                secret = self._key()
                if secret and len(secret) >= 4:  # a server echoing the key into an answer: keep it out of records
                    answer = answer.replace(secret, "[redacted]")
                if self.cache is not None:
                    self.cache.put(key, answer)
                return answer
            last = failed.reason
            if not failed.retry:
                raise self._error(failed.reason)
            if attempt == self.max_retries:
                break
            pause = self.backoff * (2 ** attempt)
            if failed.retry_after is not None:
                pause = max(pause, min(failed.retry_after, self.max_retry_after))
            left = self.remaining()
            if pause >= left:  # the wait would use the rest of the budget: give up now, not at its end
                raise self._error(f"{last}; the next attempt is due in {pause:g} s but {left:.3g} s of the "
                                  f"{self._budget_seconds:g} s budget of {self._budget_what} remain",
                                  JudgeBudgetExceeded)
            if stop.wait(pause):
                raise self._error("stopped: another request of the batch failed")
        raise self._error(f"failed after {self.max_retries + 1} attempts (last: {last}); "
                          f"check that the endpoint is up or use --judge local")

    def _check(self, attempt: int, last: str) -> None:
        if self.remaining() <= 0:
            raise self._error(f"the {self._budget_seconds:g} s time budget of {self._budget_what} ran out after "
                              f"{attempt} attempt(s)" + (f" (last: {last})" if last else ""), JudgeBudgetExceeded)

    def complete_many(self, prompts: Sequence[Messages], max_tokens: int = 64) -> list[str]:
        """Answers in prompt order; the first prompt that fails stops the others (their waits end
        and their requests in flight are cut) and its error is raised."""
        self.check_budget("before a request")
        stop = threading.Event()
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self._complete(list(m), max_tokens, stop) for m in prompts]
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts)), thread_name_prefix="judge")
        try:
            futures = [pool.submit(self._complete, list(m), max_tokens, stop) for m in prompts]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                stop.set()
                raise failed[0].exception()  # type: ignore[misc]
            return [f.result() for f in futures]
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def build(base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", **kwargs: Any) -> OpenAICompatibleJudge:
    """Factory of the registered ``openai_compatible`` judge."""
    return OpenAICompatibleJudge(base_url=base_url, model=model, api_key_env=api_key_env, **kwargs)
