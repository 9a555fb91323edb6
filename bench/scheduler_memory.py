"""Scheduler RSS with 5,000 GPU nodes and 50,000 pods, and the client-library comparison.

A faithful stand-in for the API server's list+watch surface serves pods shaped like the ones
kube-scheduler sends (recorded sample: managedFields, tolerations, status) with Kantaloupe
allocations, 8-GPU nodes with registrations, and heartbeat Leases. Paged lists, ``continue``
tokens, watches with ``resourceVersion`` all behave as the real server's do.

- default: start ``kantaloupe scheduler`` against it as a child process, wait for ``/readyz``,
  push watch events, and read the child's RSS: ``rss_mb_5000_nodes_50000_pods``.
- ``--clients``: list+watch the 50,000 pods with each candidate client in a fresh process
  (``kubernetes_asyncio`` typed models vs raw JSON + msgspec) and report seconds and RSS.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

SAMPLE = Path("/work/shared/reference/samples/extender-args-filter.json")
GPUS = 8


def _template() -> dict[str, Any]:
    if SAMPLE.exists():
        return dict(json.loads(SAMPLE.read_bytes())["Pod"])
    return {
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"containers": []},
        "status": {},
    }


def _now_micro(offset_s: float = 0) -> str:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_s)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StandIn:
    """List+watch for nodes, pods, leases; accepts event/lease writes."""

    def __init__(self, nodes: int, pods: int, watch_events: int) -> None:
        self.rv = 1000
        self.watch_events = watch_events
        tpl = _template()
        self.node_bytes: list[bytes] = []
        for n in range(nodes):
            name = f"node-{n:05d}"
            devices = [
                {
                    "uuid": f"GPU-{n:05d}-{g}",
                    "index": g,
                    "model": "NVIDIA-A100-SXM4-80GB",
                    "memory_mib": 81920,
                    "cores": 100,
                    "split": 10,
                }
                for g in range(GPUS)
            ]
            node = {
                "metadata": {
                    "name": name,
                    "uid": f"uid-{name}",
                    "resourceVersion": "10",
                    "labels": {"gpu": "on", "kubernetes.io/hostname": name},
                    "annotations": {
                        "kantaloupe.io/node-devices": json.dumps({"v": 1, "devices": devices})
                    },
                },
                "spec": {},
                "status": {"capacity": {"cpu": "64", "nvidia.com/gpu": "80"}},
            }
            self.node_bytes.append(json.dumps(node).encode())
        self.pod_bytes: list[bytes] = []
        self.pods: list[dict[str, Any]] = []
        for i in range(pods):
            n = i % nodes
            pod = json.loads(json.dumps(tpl))
            meta = pod["metadata"]
            meta.update(
                name=f"pod-{i:06d}",
                namespace=f"ns-{i % 50}",
                uid=f"uid-{i:08d}",
                resourceVersion=str(100 + i),
            )
            alloc = {
                "v": 1,
                "node": f"node-{n:05d}",
                "containers": [
                    [
                        {
                            "uuid": f"GPU-{n:05d}-{(i // nodes) % GPUS}",
                            "memory_mib": 4000,
                            "cores": 10,
                        }
                    ]
                ],
                "names": ["c"],
            }
            meta["annotations"] = {"kantaloupe.io/allocation": json.dumps(alloc)}
            pod["spec"]["nodeName"] = f"node-{n:05d}"
            pod["spec"]["containers"][0]["resources"] = {
                "limits": {
                    "nvidia.com/gpu": "1",
                    "nvidia.com/gpumem": "4000",
                    "nvidia.com/gpucores": "10",
                },
                "requests": {
                    "nvidia.com/gpu": "1",
                    "nvidia.com/gpumem": "4000",
                    "nvidia.com/gpucores": "10",
                },
            }
            pod["status"] = {"phase": "Running", "qosClass": "BestEffort"}
            self.pods.append(pod)
            self.pod_bytes.append(json.dumps(pod).encode())
        self.lease_bytes = [
            json.dumps(
                {
                    "metadata": {
                        "name": f"kantaloupe-node-node-{n:05d}",
                        "namespace": "kantaloupe-system",
                        "resourceVersion": "5",
                    },
                    "spec": {
                        "holderIdentity": "agent",
                        "leaseDurationSeconds": 3600,
                        "renewTime": _now_micro(),
                    },
                }
            ).encode()
            for n in range(nodes)
        ]
        self.app = web.Application()
        self.app.router.add_get("/api/v1/nodes", self._collection(self.node_bytes, "NodeList"))
        self.app.router.add_get("/api/v1/pods", self._collection(self.pod_bytes, "PodList", True))
        self.app.router.add_get(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            self._collection(self.lease_bytes, "LeaseList"),
        )
        self.app.router.add_route("*", "/{tail:.*}", self._accept)
        self.watchers_done = 0

    def _collection(self, items: list[bytes], kind: str, events: bool = False):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            if request.query.get("watch", "").lower() in ("true", "1"):
                return await self._watch(request, events)
            limit = int(request.query.get("limit", "0") or 0) or len(items)
            start = int(request.query.get("continue", "0") or 0)
            page = items[start : start + limit]
            cont = str(start + limit) if start + limit < len(items) else ""
            body = (
                b'{"kind":"'
                + kind.encode()
                + b'","apiVersion":"v1","metadata":'
                + json.dumps({"resourceVersion": str(self.rv), "continue": cont}).encode()
                + b',"items":['
                + b",".join(page)
                + b"]}"
            )
            return web.Response(body=body, content_type="application/json")

        return handler

    async def _watch(self, request: web.Request, events: bool) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        if events and request.query.get("resourceVersion") == str(self.rv):
            for i in range(self.watch_events):
                pod = self.pods[i % len(self.pods)]
                pod["metadata"]["resourceVersion"] = str(self.rv + 1 + i)
                await resp.write(json.dumps({"type": "MODIFIED", "object": pod}).encode() + b"\n")
            self.watchers_done += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(float(request.query.get("timeoutSeconds", "300")))
        return resp

    async def _accept(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(
                {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"},
                status=404,
            )
        body = await request.read()
        doc = json.loads(body) if body else {}
        doc.setdefault("metadata", {})["resourceVersion"] = "7"
        return web.json_response(doc, status=201)


def serve_in_thread(stand_in: StandIn) -> tuple[int, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            runner = web.AppRunner(stand_in.app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True, name="stand-in")
    thread.start()
    ready.wait(60)
    return port, thread


def kubeconfig(port: int, directory: str) -> str:
    path = Path(directory) / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return str(path)


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def scheduler_rss(port: int, tmp: str, stand_in: StandIn, timeout_s: float) -> dict[str, Any]:
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kantaloupe.cli",
            "scheduler",
            "--kubeconfig",
            kubeconfig(port, tmp),
            "--no-leader-elect",
            "--address",
            "127.0.0.1",
            "--port",
            str(http_port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started = time.monotonic()
    try:
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"scheduler exited: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > timeout_s:
                raise TimeoutError("scheduler never became ready")
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        deadline = time.monotonic() + 30
        while stand_in.watchers_done == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the watch events land
        rss = _rss_mb(child.pid)
        scrape_started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=300) as r:
            metrics = r.read().decode()
        scrape_s = time.monotonic() - scrape_started
        samples = sum(
            1
            for line in metrics.splitlines()
            if line.startswith("hami_vgpu_memory_allocated_bytes{")
        )
        return {
            "ready_s": round(ready_s, 2),
            "rss_mb": round(rss, 1),
            "rss_mb_after_scrape": round(_rss_mb(child.pid), 1),
            "scrape_s": round(scrape_s, 2),
            "vgpu_series": samples,
        }
    finally:
        child.terminate()
        try:
            child.wait(25)
        except subprocess.TimeoutExpired:
            child.kill()


_CLIENT_SCRIPT = r"""
import asyncio, json, sys, time, resource
port, which, events = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
import psutil
def rss(): return psutil.Process().memory_info().rss / 2**20
async def typed():
    from kubernetes_asyncio import client, watch
    cfg = client.Configuration(); cfg.host = f"http://127.0.0.1:{port}"
    async with client.ApiClient(cfg) as api:
        v1 = client.CoreV1Api(api)
        t = time.perf_counter(); items = []; cont = None
        while True:
            page = await v1.list_pod_for_all_namespaces(limit=500, _continue=cont)
            items.extend(page.items); cont = page.metadata._continue
            if not cont: break
        rv = page.metadata.resource_version; listed = time.perf_counter() - t
        store = {f"{p.metadata.namespace}/{p.metadata.name}": p for p in items}; n = 0
        w = watch.Watch()
        stream = w.stream(v1.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=5)
        async for ev in stream:
            o = ev["object"]; store[f"{o.metadata.namespace}/{o.metadata.name}"] = o; n += 1
            if n >= events: break
        await w.close()
        return listed, time.perf_counter() - t, len(store), rss()
async def raw():
    from kubernetes_asyncio import client as kc
    from kantaloupe.kube.client import KubeClient, pods_path
    from kantaloupe.kube.objects import Pod
    cfg = kc.Configuration(); cfg.host = f"http://127.0.0.1:{port}"
    async with KubeClient(cfg) as c:
        t = time.perf_counter()
        listing = await c.list(pods_path(), Pod, page_size=500); listed = time.perf_counter() - t
        store = {f"{p.metadata.namespace}/{p.metadata.name}": p for p in listing.items}; n = 0
        rv = listing.resource_version
        async for ev in c.watch(pods_path(), Pod, resource_version=rv, timeout_s=5):
            o = ev.object; store[f"{o.metadata.namespace}/{o.metadata.name}"] = o; n += 1
            if n >= events: break
        return listed, time.perf_counter() - t, len(store), rss()
base = rss()
listed, total, count, held = asyncio.run(typed() if which == "typed" else raw())
print(json.dumps({"client": which, "list_s": round(listed, 2), "list_watch_s": round(total, 2),
                  "objects": count, "rss_mb_holding_store": round(held, 1),
                  "base_rss_mb": round(base, 1)}))
"""


def compare_clients(port: int, events: int) -> list[dict[str, Any]]:
    out = []
    for which in ("raw", "typed"):
        proc = subprocess.run(
            [sys.executable, "-c", _CLIENT_SCRIPT, str(port), which, str(events)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            out.append({"client": which, "error": proc.stderr[-1500:]})
        else:
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=50000)
    parser.add_argument("--watch-events", type=int, default=5000)
    parser.add_argument("--clients", action="store_true", help="compare client libraries only")
    parser.add_argument("--timeout", type=float, default=600)
    a = parser.parse_args()
    t = time.perf_counter()
    stand_in = StandIn(a.nodes, a.pods, a.watch_events)
    built_s = time.perf_counter() - t
    port, _ = serve_in_thread(stand_in)
    result: dict[str, Any] = {
        "nodes": a.nodes,
        "pods": a.pods,
        "watch_events": a.watch_events,
        "stand_in_build_s": round(built_s, 1),
    }
    if a.clients:
        result["clients"] = compare_clients(port, a.watch_events)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = scheduler_rss(port, tmp, stand_in, a.timeout)
        result.update(run)
        result[f"rss_mb_{a.nodes}_nodes_{a.pods}_pods"] = run["rss_mb"]
    print(json.dumps(result))
    os._exit(0)


if __name__ == "__main__":
    main()
