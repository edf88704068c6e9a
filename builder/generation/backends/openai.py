"""Sampling from any OpenAI-compatible server: ``vllm serve``, llama.cpp's server, SGLang, TGI, hosted APIs.

Text requests go to ``/v1/completions`` (the completion prompt), message requests to
``/v1/chat/completions``. Requests run concurrently on a thread pool; 429, 5xx and dropped
connections are retried with exponential back-off (honouring ``Retry-After``). ``n`` answers per
prompt are asked for in one request; servers that ignore ``n`` (llama.cpp's returns one choice)
are detected from the first short answer and the rest is fetched one request per answer, each
with its own derived seed so that the answers differ and a rerun reproduces them.

Only the standard library is used (``urllib``): the builder's install stays light, and nothing
here depends on a client library's version.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from builder.errors import wait_first
from builder.generation.backends.base import (
    Backend,
    BackendError,
    Request,
    SamplingParams,
    derive_seed,
    truncate_at_stop,
)
from builder.progress import bar as progress_bar

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError, socket.timeout)


class OpenAIBackend(Backend):
    """A client for one model on one OpenAI-compatible server."""

    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 model_revision: str | None = None, concurrency: int = 8, max_retries: int = 6,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, timeout_s: float = 600.0,
                 max_n: int = 128) -> None:
        """``base_url``: the server, with or without ``/v1`` (``http://127.0.0.1:8080`` works).
        ``model``: the served model name; None asks the server (``/v1/models``) and takes the
        first. ``api_key`` defaults to ``$OPENAI_API_KEY``. ``max_n`` caps ``n`` per request
        (OpenAI's own API allows 128)."""
        if concurrency < 1 or max_retries < 0 or max_n < 1:
            raise BackendError("openai: need concurrency >= 1, max_retries >= 0, max_n >= 1")
        self.base_url = _normalise(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency, self.max_retries, self.max_n = concurrency, max_retries, max_n
        self.backoff_s, self.max_backoff_s, self.timeout_s = backoff_s, max_backoff_s, timeout_s
        #: None until known; False once the server answered a request for n > 1 with fewer choices
        self.honours_n: bool | None = None
        self._lock = threading.Lock()
        self.model = model or self._first_model()
        self.model_revision = model_revision

    # --- HTTP -----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with retries: transient failures (RETRY_STATUS, network errors) are retried
        after ``backoff_s * 2**attempt`` seconds (jittered, capped, or the server's Retry-After);
        anything else fails at once with the server's message."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                req = urllib.request.Request(url, data=data, headers=self._headers(), method=method)
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code in RETRY_STATUS and not last:
                    time.sleep(self._delay(attempt, e.headers.get("Retry-After")))
                    continue
                raise BackendError(f"openai: {method} {url} -> HTTP {e.code}: {detail}"
                                   + (f" (after {attempt + 1} attempts)" if attempt else "")) from None
            except _NETWORK_ERRORS as e:
                if not last:
                    time.sleep(self._delay(attempt))
                    continue
                reason = getattr(e, "reason", e)
                raise BackendError(f"openai: cannot reach {url}: {reason} (after {attempt + 1} attempts)") from None
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BackendError(f"openai: {method} {url}: response is not JSON: {raw[:200]!r}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        step = min(self.backoff_s * 2 ** attempt, self.max_backoff_s)
        # "equal jitter": at least half the step, so that back-off always grows, and spread so that
        # many workers hit by the same 429 do not come back in lockstep
        return step / 2 + random.uniform(0, step / 2)

    def _first_model(self) -> str:
        listing = self._call("GET", "/models")
        ids = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict) and m.get("id")]
        if not ids:
            raise BackendError(f"openai: {self.base_url}/models lists no model; pass model=")
        return ids[0]

    # --- one request ----------------------------------------------------------------------------
    def _sample(self, request: Request, params: SamplingParams, first: int, count: int) -> list[str]:
        """Ask for ``count`` answers (the answers ``first``.. of this prompt); the server may give fewer."""
        body: dict[str, Any] = {
            "model": self.model, "n": count, "temperature": params.temperature, "top_p": params.top_p,
            "max_tokens": params.max_new_tokens, "seed": derive_seed(params.seed, request.key, first),
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if request.messages is not None:
            body["messages"] = list(request.messages)
            reply = self._call("POST", "/chat/completions", body)
            texts = [(c.get("message") or {}).get("content") for c in _choices(reply)]
        elif request.text is not None:
            body["prompt"] = request.text
            reply = self._call("POST", "/completions", body)
            texts = [c.get("text") for c in _choices(reply)]
        else:
            raise BackendError(f"request {request.key!r} has neither text nor messages")
        if not texts:
            raise BackendError(f"openai: {self.base_url} returned no choices for {request.key!r}")
        return [truncate_at_stop(t or "", params.stop) for t in texts[:count]]

    def _chunks(self, first: int, count: int) -> list[tuple[int, int]]:
        """How to ask for answers first..first+count-1: one request per max_n, or one per answer
        once the server is known to ignore ``n``."""
        size = 1 if self.honours_n is False else self.max_n
        return [(s, min(size, first + count - s)) for s in range(first, first + count, size)]

    # --- the batch ------------------------------------------------------------------------------
    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        slots: list[list[str | None]] = [[None] * params.n for _ in requests]
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        pending: dict[Future, tuple[int, int, int]] = {}

        def submit(i: int, first: int, count: int) -> None:
            for s, c in self._chunks(first, count):
                pending[pool.submit(self._sample, requests[i], params, s, c)] = (i, s, c)

        bar = progress_bar(total=len(requests) * params.n, desc=f"sampling ({self.model})", unit="answer",
                           disable=not progress)
        try:
            for i in range(len(requests)):
                submit(i, 0, params.n)
            while pending:
                done, _ = wait_first(pending)  # wakes for a Ctrl-C (builder.errors.WAKE_S)
                for fut in done:
                    i, first, count = pending.pop(fut)
                    texts = fut.result()
                    slots[i][first:first + len(texts)] = texts
                    bar.update(len(texts))
                    if len(texts) < count:
                        with self._lock:
                            self.honours_n = False
                        submit(i, first + len(texts), count - len(texts))
                    elif count > 1:
                        with self._lock:
                            self.honours_n = True if self.honours_n is None else self.honours_n
        finally:
            bar.close()
            # on an error, drop what has not started; requests already on the wire finish alone
            pool.shutdown(wait=not pending, cancel_futures=True)
        return [[t for t in s if t is not None] for s in slots]


def _choices(reply: dict[str, Any]) -> list[dict[str, Any]]:
    choices = reply.get("choices")
    if not isinstance(choices, list):
        raise BackendError(f"openai: response has no 'choices': {json.dumps(reply)[:200]}")
    return sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0))


def _normalise(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(f"openai: base_url {base_url!r} is not an http(s) URL")
    path = parts.path if parts.path not in ("", "/") else "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()[:1000].decode("utf-8", "replace")
    except OSError:
        return e.reason or ""
    try:
        err = json.loads(raw).get("error", raw)
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except (json.JSONDecodeError, AttributeError):
        return raw.strip() or str(e.reason)
