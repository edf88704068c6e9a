"""``ap2o-build push`` against a real HTTP server on 127.0.0.1 that speaks the part of the Hub API
an upload uses (create repo, validate the card's YAML, preupload, commit): the files that arrive
must be the folder's, byte for byte; refusals and unreachable or offline hubs must end as one
clear error line and exit 2, never a traceback."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from builder.card import write_card
from builder.errors import UserError
from builder.notebook import write_configs
from builder.publish import PushConfig, push

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from synthetic_samples import humaneval_samples


class FakeHub:
    """A Hub stand-in: records what a client commits; ``refuse`` answers 401 to everything."""

    def __init__(self, refuse: bool = False):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                hub.requests.append(("GET", self.path, self.headers.get("authorization")))
                self._send(404, {"error": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("authorization")))
                if refuse:
                    return self._send(401, {"error": "Invalid credentials"})
                if self.path == "/api/repos/create":
                    d = json.loads(body)
                    hub.created.append(d)
                    return self._send(200, {"url": f"{hub.url}/datasets/{d['organization']}/{d['name']}"})
                if self.path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        op = json.loads(line)
                        if op["key"] == "file":
                            hub.files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                    repo = self.path.split("/commit/")[0].removeprefix("/api/")
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
                return self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("push") / "ap2o-tiny"
    write_configs(pa.concat_tables([humaneval_samples(5), humaneval_samples(3, split="test")]), out, progress=False)
    write_card(out)
    return out


def _push_cli(folder: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(folder.parent / "hf-home"), **env}
    if "HF_TOKEN" not in env:  # the "no token" case: nothing inherited either
        full_env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "builder.cli", "push", str(folder), *args],
                          check=False, capture_output=True, text=True, env=full_env, timeout=120)


def test_push_uploads_every_file_of_the_folder(folder):
    with FakeHub() as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--private", "--endpoint", hub.url,
                         env={"HF_TOKEN": "hf_test_token"})
    assert proc.returncode == 0, proc.stderr
    assert "pushed" in proc.stdout
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert set(hub.files) == set(local)
    assert all(hub.files[k] == v for k, v in local.items())
    assert [(c["organization"], c["name"], c["type"], c["visibility"]) for c in hub.created] == [
        ("me", "ap2o-tiny", "dataset", "private")]
    assert all(auth == "Bearer hf_test_token" for *_, auth in hub.requests)


def test_refused_token_is_one_clear_error(folder):
    with FakeHub(refuse=True) as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, env={"HF_TOKEN": "hf_bad"})
    assert proc.returncode == 2
    assert "refused the token (HTTP 401)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_hub_is_one_clear_error(folder):
    with FakeHub() as hub:  # take a free port, then close it: nothing listens there
        url = hub.url
    proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", url, env={"HF_TOKEN": "hf_x"})
    assert proc.returncode == 2
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr


def test_offline_mode_and_missing_token_fail_before_any_request(folder):
    proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", env={"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_x"})
    assert proc.returncode == 2 and "offline mode" in proc.stderr
    with FakeHub() as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, env={})
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr
    assert hub.requests == []


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no README.md"):
        push(tmp_path / "empty", PushConfig(repo_id="me/x", token="hf_x"))
    with pytest.raises(UserError, match="no such dataset folder"):
        push(tmp_path / "missing", PushConfig(repo_id="me/x", token="hf_x"))
