"""A loopback OpenAI-compatible chat-completions server over a local transformers model.

Serves ``POST /v1/chat/completions`` (and ``GET /v1/models``) from ``http.server`` in a thread,
answering with a real model through :func:`judges.local.chat_generate`. It exists so the HTTP
judge is tested end to end against a real server, and so anyone can point an
``openai_compatible`` judge at a local model::

    python -m saebench_sanity.judges.server --port 8765      # serves the default SmolLM2

``faults`` injects failures for tests, consumed one per request in order (then ``always``, a
fault for every later request, or None: answer normally):

* ``"500"``; ``"429"`` (with ``Retry-After: 0``); ``"retry_after_60"`` (429 with
  ``Retry-After: 60``); ``"malformed"`` (200 with a non-JSON body);
* ``"timeout"``: sleeps ``fault_sleep`` seconds before answering;
* ``"trickle"``: a correct reply whose body is sent one byte every ``fault_sleep / 10`` seconds
  (each read returns within a socket timeout; only a deadline over the whole body stops it);
  ``"trickle_head"``: the same from the status line on; ``trickled`` counts the bytes dripped;
* ``"huge"``: a 200 reply of ``huge_bytes`` bytes declared in Content-Length; ``"huge_stream"``:
  the same without a length (close-delimited), so only a streamed cap can stop it;
* ``"echo"`` / ``"echo200"``: a 502 / 200 HTML error page quoting the request headers back (a
  misconfigured proxy), Authorization included.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

Generate = Callable[[list[dict[str, str]], int], str]


class ChatServer:
    """``with ChatServer(generate) as srv: srv.base_url`` -> ``"http://127.0.0.1:<port>/v1"``."""

    def __init__(self, generate: Generate, model_name: str = "local", host: str = "127.0.0.1", port: int = 0,
                 faults: Iterable[str | None] = (), fault_sleep: float = 2.0, always: str | None = None,
                 huge_bytes: int = 8 << 20) -> None:
        self.generate, self.model_name = generate, model_name
        self.faults: deque[str | None] = deque(faults)
        self.fault_sleep, self.always, self.huge_bytes = fault_sleep, always, huge_bytes
        self.trickled = 0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # stop() must not wait for a handler that is stalling on purpose
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else self.always

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model_name, "object": "model"}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:  # noqa: N802
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    messages = body["messages"]
                    max_tokens = int(body.get("max_tokens") or 64)
                except (ValueError, KeyError, TypeError):
                    self._send(400, b'{"error": {"message": "bad request: need JSON with messages"}}')
                    return
                with server._lock:
                    server.requests.append(body)
                fault = server._next_fault()
                if fault == "500":
                    self._send(500, b'{"error": {"message": "injected server error"}}')
                    return
                if fault == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0"})
                    return
                if fault == "retry_after_60":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "60"})
                    return
                if fault == "malformed":
                    self._send(200, b"<html>this is not json")
                    return
                if fault in ("echo", "echo200"):
                    echoed = "".join(f"<li>{k}: {v}</li>" for k, v in self.headers.items())
                    self._send(502 if fault == "echo" else 200,
                               f"<html><h1>Bad gateway</h1><p>your request:</p><ul>{echoed}</ul></html>".encode())
                    return
                if fault in ("huge", "huge_stream"):
                    self._huge(declared=fault == "huge")
                    return
                if fault == "timeout":
                    time.sleep(server.fault_sleep)
                with server._gen_lock:
                    text = server.generate(messages, max_tokens)
                reply = {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", server.model_name),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }
                if fault == "trickle":
                    self._trickle(json.dumps(reply).encode())
                    return
                if fault == "trickle_head":  # the status line and headers themselves, byte by byte
                    payload = json.dumps(reply).encode()
                    head = (f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(payload)}\r\n\r\n").encode()
                    self.close_connection = True
                    self._drip(head + payload)
                    return
                self._send(200, json.dumps(reply).encode())

            def _trickle(self, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self._drip(payload)

            def _drip(self, payload: bytes) -> None:
                try:
                    for i in range(len(payload)):
                        self.wfile.write(payload[i:i + 1])
                        self.wfile.flush()
                        with server._lock:
                            server.trickled += 1
                        time.sleep(server.fault_sleep / 10)
                except OSError:  # the client hung up: what a deadline does
                    pass

            def _huge(self, declared: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if declared:
                    self.send_header("Content-Length", str(server.huge_bytes))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                block = b" " * 65536
                try:
                    for start in range(0, server.huge_bytes, len(block)):
                        self.wfile.write(block[:server.huge_bytes - start])
                except OSError:
                    pass

        return Handler

    def start(self) -> "ChatServer":
        # a short poll interval: stop() waits up to one interval for the serving loop to notice
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="saebench-chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def model_generate(model: Any, tokenizer: Any) -> Generate:
    """A ``generate(messages, max_tokens)`` over a transformers causal LM (greedy)."""
    from saebench_sanity.judges.local import chat_generate

    return lambda messages, max_tokens: chat_generate(model, tokenizer, messages, max_tokens)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    import argparse

    from saebench_sanity.judges.local import _load

    ap = argparse.ArgumentParser(description="serve a local causal LM through the OpenAI chat-completions schema")
    ap.add_argument("--model", default="default", help="'default' (embedded SmolLM2) or a model folder / hub id")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    model, tok, _ = _load(args.model)
    srv = ChatServer(model_generate(model, tok), model_name=args.model, port=args.port).start()
    print(f"serving {args.model} at {srv.base_url} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
