"""A small OpenAI-compatible server on 127.0.0.1 for tests, with injectable faults.

It implements ``POST /v1/chat/completions``, answers each prompt with the JSON object its text
asks for, and can fail on purpose: 429 with Retry-After, 500, a reply slower than the client's
timeout, a malformed body, a dropped connection, a non-JSON answer, or a refusal: in words, or
in the API's own ``refusal`` field with no content (``api_refusal``).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# the random faults (``api_refusal`` and ``401_echo`` are asked for by a script only)
FAULTS = ("429", "500", "slow", "malformed", "drop", "not_json", "refusal")


def _answer_for(body: dict) -> dict:
    text = " ".join(
        part.get("text", "")
        for msg in body["messages"]
        for part in (
            msg["content"] if isinstance(msg["content"], list) else [{"text": msg["content"]}]
        )
    )
    if '"characteristics"' in text:
        return {"characteristics": "A regular object with an even surface and intact outline."}
    if '"visual_traits"' in text:
        return {"visual_traits": "A thin dark line across the surface, a few pixels wide.",
                "effect": "It weakens the part."}  # fmt: skip
    if '"description"' in text:
        return {"description": "An object whose surface shows one small irregular mark."}
    return {"answer": "A"}


class FakeOpenAI:
    """Start with ``with FakeOpenAI(...) as server:``; ``server.url`` is the base URL (…/v1)."""

    def __init__(
        self,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        slow_s: float = 1.5,
        retry_after: str = "0",
        script: Callable[[int, dict], str | None] | None = None,
    ):
        self.fault_rate, self.faults, self.slow_s = fault_rate, faults, slow_s
        self.retry_after = retry_after
        self.script = script
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request: time, auth header, body, fault
        self.fault_counts: Counter[str] = Counter()
        self.answer: Callable[[dict], dict | str] = _answer_for

    # ---- server plumbing -------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server._handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def completions(self) -> int:
        """Requests answered with a usable completion."""
        return sum(1 for r in self.requests if r["fault"] is None)

    def _pick_fault(self, n: int, body: dict) -> str | None:
        if self.script is not None:
            return self.script(n, body)
        with self.lock:
            if self.rng.random() < self.fault_rate:
                return self.rng.choice(self.faults)
        return None

    def _handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        with self.lock:
            n = len(self.requests)
            record = {"t": time.monotonic(), "auth": h.headers.get("Authorization"), "body": body}
            self.requests.append(record)
        fault = self._pick_fault(n, body)
        record["fault"] = fault
        if fault:
            with self.lock:
                self.fault_counts[fault] += 1
        if fault == "429":
            return self._send(h, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                              {"Retry-After": self.retry_after})  # fmt: skip
        if fault == "401":
            return self._send(h, 401, {"error": {"message": "Incorrect API key provided",
                                                 "type": "invalid_request_error"}})  # fmt: skip
        if fault == "401_echo":  # a proxy that echoes the whole key back
            key = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {key}",
                                                 "type": "invalid_request_error"}})  # fmt: skip
        if fault == "500":
            return self._send(h, 500, {"error": {"message": "boom", "type": "server_error"}})
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "malformed":
            return self._send_raw(h, 200, b'{"id": "x", "choices": [{"mess')
        answer = self.answer(body)
        content = json.dumps(answer) if isinstance(answer, dict) else answer
        if fault == "not_json":
            content = "Sure! The object looks fine to me."
        elif fault == "refusal":
            content = "I'm sorry, but I can't help with that."
        message = {"role": "assistant", "content": content}
        if fault == "api_refusal":
            message = {"role": "assistant", "content": None,
                       "refusal": "I'm unable to assist with this request."}  # fmt: skip
        completion = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
        }  # fmt: skip
        return self._send(h, 200, completion)

    def _send(self, h, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send_raw(h, status, json.dumps(payload).encode(), headers)

    def _send_raw(self, h, status: int, data: bytes, headers: dict | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the point of a slow reply
