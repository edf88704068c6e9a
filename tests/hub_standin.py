"""A stand-in for the part of the Hugging Face Hub's HTTP API that ``huggingface_hub`` uses to push
a dataset or model folder, to look a model up and to download one file: a real HTTP server on
127.0.0.1 that keeps each repo's files in memory, so a test checks the calls a client really makes
(create repo, validate the card, preupload, commit with additions and deletions, pull requests,
tree listing, model info, resolve) and what the repo holds afterwards. Dataset and model repos
share one namespace (``files[repo_id]``); the API paths of both are answered."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "a" * 40
API_PREFIXES = ("/api/datasets/", "/api/models/")


def _repo_of(path: str) -> str:
    """``/api/models/ORG/NAME/...`` or ``/api/datasets/ORG/NAME/...`` -> the rest after the prefix."""
    for prefix in API_PREFIXES:
        if path.startswith(prefix):
            return path.removeprefix(prefix)
    return path


class FakeHub:
    """``files[repo_id]``: the main branch's files; ``prs[repo_id]``: one dict of operations per pull
    request; ``requests``: (method, path, authorization) of every request; ``refuse`` answers 401."""

    def __init__(self, refuse: bool = False):
        self.files: dict[str, dict[str, bytes]] = {}
        self.prs: dict[str, list[dict]] = {}
        self.commits: list[dict] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, obj, headers: dict[str, str] | None = None) -> None:
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(obj, bytes) else "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self):
                url = urllib.parse.urlsplit(self.path)
                return urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                hub.requests.append((self.command, self.path, self.headers.get("authorization")))
                if refuse:
                    return self._send(401, {"error": "Invalid credentials"})
                path, _ = self._route()
                if path.startswith("/api/datasets/") and "/discussions/" in path:
                    repo, num = path.removeprefix("/api/datasets/").split("/discussions/", 1)
                    prs = hub.prs.get(repo, [])
                    if not num.isdigit() or not 0 < int(num) <= len(prs):
                        return self._send(404, {"error": "Discussion not found"})
                    return self._send(200, {
                        "num": int(num), "title": prs[int(num) - 1]["title"], "status": "draft",
                        "createdAt": "2026-01-01T00:00:00.000Z", "isPullRequest": True, "events": [],
                        "repo": {"name": repo, "type": "dataset"}, "changes": {"base": "refs/heads/main"},
                        "filesWithConflicts": [], "author": {"name": "me"}})
                if path.startswith(API_PREFIXES) and "/tree/" in path:
                    repo, rest = _repo_of(path).split("/tree/", 1)
                    if repo not in hub.files:
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    prefix = rest.partition("/")[2].strip("/")
                    items = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                             for p, b in sorted(hub.files[repo].items()) if not prefix or p.startswith(prefix + "/")]
                    return self._send(200, items)
                if path.startswith("/api/models/") and path.count("/") in (4, 6):  # model_info (at a revision)
                    repo = "/".join(_repo_of(path).split("/")[:2])
                    if repo not in hub.files:
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    return self._send(200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                                            "siblings": [{"rfilename": f} for f in sorted(hub.files[repo])]})
                if "/resolve/" in path:
                    repo, rest = path.removeprefix("/datasets/").lstrip("/").split("/resolve/", 1)
                    name = rest.partition("/")[2]
                    data = hub.files.get(repo, {}).get(name)
                    if data is None:
                        code = "EntryNotFound" if repo in hub.files else "RepoNotFound"
                        return self._send(404, {"error": f"{code}"}, {"X-Error-Code": code})
                    etag = f'"{hashlib.sha1(data).hexdigest()}"'
                    return self._send(200, data, {"ETag": etag, "X-Repo-Commit": COMMIT})
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("authorization")))
                if refuse:
                    return self._send(401, {"error": "Invalid credentials"})
                path, query = self._route()
                if path == "/api/repos/create":
                    d = json.loads(body)
                    hub.created.append(d)
                    repo = f"{d['organization']}/{d['name']}"
                    hub.files.setdefault(repo, {})
                    return self._send(200, {"url": f"{hub.url}/datasets/{repo}"})
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                if "/branch/" in path:
                    return self._send(200, {})
                if path.endswith("/discussions"):
                    repo = path.removeprefix("/api/datasets/").removesuffix("/discussions")
                    d = json.loads(body)
                    hub.prs.setdefault(repo, []).append({"title": d["title"], "pull_request": d.get("pullRequest"),
                                                         "added": {}, "deleted": [], "summary": None})
                    return self._send(200, {"num": len(hub.prs[repo])})
                if "/commit/" in path:
                    repo, revision = _repo_of(path).split("/commit/", 1)
                    kind = "datasets/" if path.startswith("/api/datasets/") else ""
                    ops = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next((op["value"] for op in ops if op["key"] == "header"), {})
                    commit = {"repo": repo, "summary": header.get("summary"),
                              "added": {op["value"]["path"]: base64.b64decode(op["value"]["content"])
                                        for op in ops if op["key"] == "file"},
                              "deleted": [op["value"]["path"] for op in ops if op["key"] in ("deletedFile", "deletedFolder")],
                              "create_pr": query.get("create_pr") == ["1"]}
                    hub.commits.append(commit)
                    if revision.startswith("refs/pr/"):  # a commit to a pull request opened before
                        num = int(revision.removeprefix("refs/pr/"))
                        pr = hub.prs[repo][num - 1]
                        pr["added"].update(commit["added"])
                        pr["deleted"] += commit["deleted"]
                        pr["summary"] = pr["summary"] or commit["summary"]
                        return self._send(200, {"commitUrl": f"{hub.url}/{kind}{repo}/commit/{COMMIT}",
                                                "commitOid": COMMIT})
                    if commit["create_pr"]:  # the legacy single-commit path opens the PR with the commit
                        hub.prs.setdefault(repo, []).append({**commit, "title": commit["summary"]})
                        num = len(hub.prs[repo])
                        return self._send(200, {"commitUrl": f"{hub.url}/{kind}{repo}/commit/{COMMIT}",
                                                "commitOid": COMMIT,
                                                "pullRequestUrl": f"{hub.url}/{kind}{repo}/discussions/{num}"})
                    files = hub.files.setdefault(repo, {})
                    for gone in commit["deleted"]:
                        for p in [p for p in files if p == gone or p.startswith(gone.rstrip("/") + "/")]:
                            del files[p]
                    files.update(commit["added"])
                    return self._send(200, {"commitUrl": f"{hub.url}/{kind}{repo}/commit/{COMMIT}",
                                            "commitOid": COMMIT})
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
