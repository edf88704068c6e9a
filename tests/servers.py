"""Real HTTP servers on 127.0.0.1 for the tests: a process started and always stopped
(``running``, with ``free_port``), and an in-process OpenAI-compatible endpoint that refuses every
request (``RefusingServer``), shared by the openai backend's, the engine's and ``ap2o-eval``'s tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/models", timeout=2).close()
            return
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} not ready after {timeout} s")


@contextlib.contextmanager
def running(cmd: list[str], port: int, timeout: float = 30.0, **kw):
    """Start a server process, wait until it answers /v1/models, always stop it afterwards.
    Its output goes to a temporary file, not a pipe: a chatty server (llama.cpp) would fill an
    unread pipe and block."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            try:
                wait_ready(url, proc, timeout)
            except (RuntimeError, TimeoutError) as e:
                proc.kill()
                proc.wait()
                out.seek(0)
                raise RuntimeError(f"{e}: {out.read().decode(errors='replace')[-2000:]}") from None
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RefusingServer:
    """An OpenAI-compatible endpoint that answers every request with HTTP 400 (a model it does
    not serve): the backend cannot produce answers, and says so at once."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"error": {"message": "model 'nope' not found", "type": "invalid_request_error"}}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
