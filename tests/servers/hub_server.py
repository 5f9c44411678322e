"""A test double of the Hugging Face Hub: the HTTP endpoints ``huggingface_hub`` and ``datasets`` use to
push a dataset and read one back, in memory, on 127.0.0.1.

The Hub itself cannot run here. This stand-in answers the routes of the Hub's HTTP API that
``HfApi.create_repo``, ``preupload_lfs_files``, ``create_commit``, ``list_repo_tree``, ``paths-info``,
``repo_info`` and ``hf_hub_download`` call (``HF_ENDPOINT=http://127.0.0.1:PORT``), and Git LFS's
batch API with its ``basic`` transfer (``.parquet`` files are LFS files, as on the Hub; others go inline,
base64 in the commit's NDJSON). Xet storage is not implemented: clients run with ``HF_HUB_DISABLE_XET=1``,
which ``huggingface_hub`` honours by taking the LFS path. It checks the bearer token on every write and on
reads of private repos, as the Hub does, and records each request's method, path and ``Authorization``
header (``/_received``), so a test can check where a token went. Control routes: ``/_files/{repo}``
(the repo's files), ``/_reset``.

Run it: ``python -m tests.servers.hub_server --port 8765 --token hf_test``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import time
from typing import Any

import yaml
from aiohttp import web


class HubServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.reset()

    def reset(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.lfs: dict[str, bytes] = {}  # uploaded LFS objects by sha256
        self.received: list[dict[str, Any]] = []

    # -- helpers --------------------------------------------------------------------------------------
    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def repo(self, request: web.Request) -> dict[str, Any] | None:
        """The repo the route names; ``None`` (a 404, as on the Hub) for a private one read without the
        token."""
        repo = self.repos.get(f"{request.match_info['namespace']}/{request.match_info['name']}")
        if repo is not None and repo["private"] and not self.authorized(request):
            return None
        return repo

    @staticmethod
    def not_found(what: str, code: str = "RepoNotFound") -> web.Response:
        return web.json_response({"error": what}, status=404, headers={"X-Error-Code": code})

    def entry(self, repo: dict[str, Any], path: str) -> dict[str, Any]:
        data = repo["files"][path]
        return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.received.append(
            {"method": request.method, "path": request.path, "auth": request.headers.get("Authorization")}
        )
        writes = request.method not in ("GET", "HEAD") and request.path != "/api/validate-yaml"
        if writes and not request.path.startswith("/_") and not self.authorized(request):
            return web.json_response(
                {"error": "Invalid credentials in Authorization header"},
                status=401,
                headers={"X-Error-Code": "InvalidCredentials"},
            )
        return await handler(request)

    # -- the Hub's API ------------------------------------------------------------------------------------
    async def whoami(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}}
        )

    async def validate_yaml(self, request: web.Request) -> web.Response:
        """A README's YAML header must parse to a mapping (the Hub checks more: known keys, types)."""
        content = (await request.json())["content"]
        if content.startswith("---\n"):
            header = content[4:].split("\n---\n", 1)[0]
            try:
                parsed = yaml.safe_load(header)
            except yaml.YAMLError as error:
                return web.json_response({"errors": [{"message": f"invalid YAML: {error}"}]}, status=400)
            if parsed is not None and not isinstance(parsed, dict):
                return web.json_response({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    async def create_repo(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("type") != "dataset":
            return web.json_response({"error": "this stand-in keeps dataset repos only"}, status=400)
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        url = f"{request.scheme}://{request.host}/datasets/{repo_id}"
        if repo_id in self.repos:
            return web.json_response(
                {"error": "You already created this dataset repo", "url": url}, status=409
            )
        self.repos[repo_id] = {"private": bool(body.get("private")), "files": {}, "sha": "0" * 40}
        return web.json_response({"url": url, "name": repo_id, "id": repo_id})

    async def repo_info(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        repo_id = f"{request.match_info['namespace']}/{request.match_info['name']}"
        return web.json_response(
            {
                "id": repo_id,
                "_id": repo_id,
                "author": request.match_info["namespace"],
                "sha": repo["sha"],
                "private": repo["private"],
                "disabled": False,
                "gated": False,
                "lastModified": "2026-11-30T00:00:00.000Z",
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(repo["files"])],
            }
        )

    async def preupload(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        files = (await request.json())["files"]
        return web.json_response(
            {
                "files": [
                    {"path": f["path"], "uploadMode": _mode(f["path"]), "shouldIgnore": False} for f in files
                ],
                "commitOid": repo["sha"],
            }
        )

    async def commit(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        for line in (await request.text()).splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    return web.json_response({"error": "files must be base64"}, status=400)
                repo["files"][value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                repo["files"].pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in repo["files"] if p.startswith(prefix)]:
                    del repo["files"][path]
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return web.json_response(
                        {"error": f"LFS object {value['oid']} was not uploaded"}, status=422
                    )
                repo["files"][value["path"]] = self.lfs[value["oid"]]
        repo["sha"] = hashlib.sha1(f"{repo['sha']}{time.time_ns()}".encode()).hexdigest()
        repo_id = f"{request.match_info['namespace']}/{request.match_info['name']}"
        url = f"{request.scheme}://{request.host}/datasets/{repo_id}/commit/{repo['sha']}"
        return web.json_response({"commitUrl": url, "commitOid": repo["sha"], "success": True})

    async def lfs_batch(self, request: web.Request) -> web.Response:
        """Git LFS's batch API, ``basic`` transfer: one PUT per object to the ``href`` given."""
        body = await request.json()
        if body.get("operation") != "upload":
            return web.json_response({"message": "this stand-in takes uploads only"}, status=422)
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                href = f"{request.scheme}://{request.host}/_lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(entry)
        return web.json_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    async def lfs_put(self, request: web.Request) -> web.Response:
        data = await request.read()
        oid = request.match_info["oid"]
        if hashlib.sha256(data).hexdigest() != oid:
            return web.json_response({"message": "the object's sha256 is not its oid"}, status=422)
        self.lfs[oid] = data
        return web.Response()

    async def tree(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        folder = request.match_info.get("path", "").strip("/")
        recursive = request.query.get("recursive", "false").lower() == "true"
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(repo["files"]):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                sub = prefix + rest.split("/")[0]
                entries[sub] = {"type": "directory", "path": sub, "oid": "0" * 40, "size": 0}
            else:
                if recursive:
                    parts = rest.split("/")[:-1]
                    for i in range(len(parts)):
                        sub = prefix + "/".join(parts[: i + 1])
                        entries[sub] = {"type": "directory", "path": sub, "oid": "0" * 40, "size": 0}
                entries[path] = self.entry(repo, path)
        if folder and not entries:
            return self.not_found(f"{folder} does not exist", "EntryNotFound")
        return web.json_response(list(entries.values()))

    async def paths_info(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        form = await request.post() if request.content_type != "application/json" else await request.json()
        paths = form.getall("paths") if hasattr(form, "getall") else form["paths"]
        found = []
        for path in paths:
            if path in repo["files"]:
                found.append(self.entry(repo, path))
            elif any(p.startswith(path.rstrip("/") + "/") for p in repo["files"]):
                found.append({"type": "directory", "path": path, "oid": "0" * 40, "size": 0})
        return web.json_response(found)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        path = request.match_info["path"]
        if path not in repo["files"]:
            return self.not_found("Entry not found", "EntryNotFound")
        data = repo["files"][path]
        headers = {
            "X-Repo-Commit": repo["sha"],
            "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
            "Content-Length": str(len(data)),
        }
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=data, headers=headers)

    # -- control ----------------------------------------------------------------------------------------
    async def files(self, request: web.Request) -> web.Response:
        repo = self.repo(request)
        if repo is None:
            return self.not_found("Repository not found")
        return web.json_response(
            {
                "private": repo["private"],
                "files": {p: base64.b64encode(d).decode() for p, d in repo["files"].items()},
            }
        )

    async def received_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.received)

    async def reset_handler(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record], client_max_size=2**28)
        repo = "/{namespace}/{name}"
        app.router.add_get("/api/whoami-v2", self.whoami)
        app.router.add_post("/api/repos/create", self.create_repo)
        app.router.add_post("/api/validate-yaml", self.validate_yaml)
        app.router.add_get(f"/api/datasets{repo}", self.repo_info)
        app.router.add_get(f"/api/datasets{repo}/revision/{{revision}}", self.repo_info)
        app.router.add_post(f"/api/datasets{repo}/preupload/{{revision}}", self.preupload)
        app.router.add_post(f"/api/datasets{repo}/commit/{{revision}}", self.commit)
        app.router.add_get(f"/api/datasets{repo}/tree/{{revision}}", self.tree)
        app.router.add_get(f"/api/datasets{repo}/tree/{{revision}}/{{path:.*}}", self.tree)
        app.router.add_post(f"/api/datasets{repo}/paths-info/{{revision}}", self.paths_info)
        app.router.add_route("*", f"/datasets{repo}/resolve/{{revision}}/{{path:.*}}", self.resolve)
        app.router.add_post(f"/datasets{repo}.git/info/lfs/objects/batch", self.lfs_batch)
        app.router.add_put("/_lfs/{oid}", self.lfs_put)
        app.router.add_get(f"/_files{repo}", self.files)
        app.router.add_get("/_received", self.received_handler)
        app.router.add_post("/_reset", self.reset_handler)
        return app


def _mode(path: str) -> str:
    """How the Hub would take a file: binary data files through LFS, text inline."""
    return "lfs" if path.endswith((".parquet", ".arrow", ".bin")) else "regular"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True, help="the bearer token every Hub request must carry")
    args = parser.parse_args()
    web.run_app(HubServer(args.token).app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
