"""A tiny in-process stand-in for the API server's HTTP surface (real sockets, raw JSON)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from kantaloupe.kube.client import KubeClient


def status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class FakeApiServer:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.rv = 100
        self.requests: list[tuple[str, str, str, str]] = []
        self.watch_queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.leases: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.list_calls = 0
        self.app = web.Application()
        r = self.app.router
        r.add_get("/api/v1/pods", self.list_pods)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}", self.get_pod)
        r.add_patch("/api/v1/namespaces/{ns}/pods/{name}", self.patch_pod)
        r.add_post("/api/v1/namespaces/{ns}/pods/{name}/binding", self.bind)
        r.add_post("/api/v1/namespaces/{ns}/events", self.create_event)
        r.add_patch("/api/v1/namespaces/{ns}/events/{name}", self.patch_event)
        r.add_get("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self.get_lease)
        r.add_post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", self.create_lease)
        r.add_put("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self.put_lease)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for _ in range(10):
            self.watch_queue.put_nowait(None)
        if self.runner is not None:
            await self.runner.cleanup()

    def client(self) -> KubeClient:
        cfg = k8s_client.Configuration()
        cfg.host = f"http://127.0.0.1:{self.port}"
        return KubeClient(cfg, timeout_s=5)

    def add_pod(self, name: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
        self.rv += 1
        pod = {
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": f"uid-{name}",
                "resourceVersion": str(self.rv),
                "annotations": {},
                "managedFields": [{"manager": "x"}],
            },
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending"},
            **extra,
        }
        self.pods[f"{ns}/{name}"] = pod
        return pod

    def _log(self, request: web.Request, body: bytes = b"") -> None:
        self.requests.append((request.method, request.path, request.content_type, body.decode()))

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            return await self.watch(request)
        self._log(request)
        self.list_calls += 1
        items = sorted(self.pods.values(), key=lambda p: p["metadata"]["name"])
        limit = int(request.query.get("limit", "0"))
        start = int(request.query.get("continue", "0") or 0)
        page = items[start : start + limit] if limit else items
        cont = str(start + limit) if limit and start + limit < len(items) else ""
        return web.json_response(
            {
                "kind": "PodList",
                "metadata": {"resourceVersion": str(self.rv), "continue": cont},
                "items": page,
            }
        )

    async def watch(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            line = await self.watch_queue.get()
            if line is None:
                break
            await resp.write(line)
        await resp.write_eof()
        return resp

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self.pods.get(f"{request.match_info['ns']}/{request.match_info['name']}")
        if pod is None:
            return status(404, "NotFound", f'pods "{request.match_info["name"]}" not found')
        return web.json_response(pod)

    async def patch_pod(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._log(request, body)
        pod = self.pods.get(f"{request.match_info['ns']}/{request.match_info['name']}")
        if pod is None:
            return status(404, "NotFound", "not found")
        patch = json.loads(body)
        rv = patch["metadata"].get("resourceVersion")
        if rv and rv != pod["metadata"]["resourceVersion"]:
            return status(409, "Conflict", "the object has been modified")
        for k, v in patch["metadata"].get("annotations", {}).items():
            if v is None:
                pod["metadata"]["annotations"].pop(k, None)
            else:
                pod["metadata"]["annotations"][k] = v
        return web.json_response(pod)

    async def bind(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._log(request, body)
        pod = self.pods[f"{request.match_info['ns']}/{request.match_info['name']}"]
        doc = json.loads(body)
        if pod["spec"].get("nodeName"):
            return status(409, "Conflict", "pod is already assigned to node")
        pod["spec"]["nodeName"] = doc["target"]["name"]
        return web.json_response({"kind": "Status", "status": "Success"}, status=201)

    async def create_event(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        self.events[doc["metadata"]["name"]] = doc
        return web.json_response(doc, status=201)

    async def patch_event(self, request: web.Request) -> web.Response:
        doc = self.events[request.match_info["name"]]
        doc.update(json.loads(await request.read()))
        return web.json_response(doc)

    async def get_lease(self, request: web.Request) -> web.Response:
        lease = self.leases.get(request.match_info["name"])
        if lease is None:
            return status(404, "NotFound", "lease not found")
        return web.json_response(lease)

    async def create_lease(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        name = doc["metadata"]["name"]
        if name in self.leases:
            return status(409, "AlreadyExists", "exists")
        self.rv += 1
        doc["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[name] = doc
        return web.json_response(doc, status=201)

    async def put_lease(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        name = request.match_info["name"]
        current = self.leases.get(name)
        if current is None or current["metadata"]["resourceVersion"] != doc["metadata"].get(
            "resourceVersion"
        ):
            return status(409, "Conflict", "the object has been modified")
        self.rv += 1
        doc["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[name] = doc
        return web.json_response(doc)


def event_line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"
