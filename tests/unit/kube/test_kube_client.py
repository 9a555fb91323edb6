"""The adapter over real HTTP: raw JSON into slim Structs, errors mapped, list+watch+relist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from kube_support import FakeApiServer, event_line

from kantaloupe.api import errors as api_errors
from kantaloupe.kube import errors, objects
from kantaloupe.kube.client import pod_path, pods_path
from kantaloupe.kube.election import ElectionSettings, LeaderElector
from kantaloupe.kube.events import EventRecorder, ObjectRef
from kantaloupe.kube.watching import Informer


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


async def test_get_decodes_only_the_slim_fields(api: FakeApiServer) -> None:
    api.add_pod("p")
    async with api.client() as c:
        pod = await c.get(pod_path("default", "p"), objects.Pod)
    assert pod.metadata.uid == "uid-p" and pod.status.phase == "Pending"
    assert not hasattr(pod.metadata, "managed_fields")


@pytest.mark.parametrize(
    "status,reason,cls",
    [
        (404, "NotFound", errors.NotFoundError),
        (409, "Conflict", errors.ConflictError),
        (409, "AlreadyExists", errors.AlreadyExistsError),
        (410, "Expired", errors.GoneError),
        (403, "Forbidden", errors.ForbiddenError),
        (422, "Invalid", errors.InvalidError),
        (503, "ServiceUnavailable", errors.ServerError),
    ],
)
def test_status_bodies_map_to_our_errors(status: int, reason: str, cls: type) -> None:
    body = json.dumps({"kind": "Status", "reason": reason, "message": "m", "code": status})
    error = errors.from_response(status, body.encode())
    assert type(error) is cls and error.message == "m"
    assert isinstance(error, api_errors.KantaloupeError)
    if status == 409:
        assert isinstance(error, api_errors.ConflictError)


def test_foreign_text_is_cut() -> None:
    error = errors.from_response(502, b"<html>" + b"x" * 1000)
    assert isinstance(error, errors.ServerError) and len(error.message) <= 256


async def test_missing_object_raises_not_found(api: FakeApiServer) -> None:
    async with api.client() as c:
        with pytest.raises(errors.NotFoundError):
            await c.get(pod_path("default", "nope"), objects.Pod)
        assert await c.get_or_none(pod_path("default", "nope"), objects.Pod) is None


async def test_connection_refused_is_a_transport_error() -> None:
    server = FakeApiServer()
    await server.start()
    client = server.client()
    await server.stop()
    with pytest.raises(errors.TransportError):
        await client.get(pod_path("default", "p"), objects.Pod)
    await client.close()


async def test_patch_annotations_is_a_merge_patch_with_optional_version(api: FakeApiServer) -> None:
    api.add_pod("p")
    async with api.client() as c:
        pod = await c.patch_annotations(pod_path("default", "p"), {"a": "1"}, objects.Pod)
        assert pod.metadata.annotations == {"a": "1"}
        with pytest.raises(errors.ConflictError):
            await c.patch_annotations(
                pod_path("default", "p"), {"a": None}, objects.Pod, resource_version="1"
            )
    method, _, content_type, body = api.requests[0]
    assert method == "PATCH" and content_type == "application/merge-patch+json"
    assert json.loads(body) == {"metadata": {"annotations": {"a": "1"}}}


async def test_bind_posts_a_binding_with_uid(api: FakeApiServer) -> None:
    api.add_pod("p")
    async with api.client() as c:
        await c.bind_pod("default", "p", "uid-p", "n1")
        with pytest.raises(errors.ConflictError):
            await c.bind_pod("default", "p", "uid-p", "n1")
    doc = json.loads(api.requests[0][3])
    assert doc["kind"] == "Binding" and doc["metadata"]["uid"] == "uid-p"
    assert doc["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n1"}


async def test_list_pages_through_continue_tokens(api: FakeApiServer) -> None:
    for i in range(7):
        api.add_pod(f"p{i}")
    async with api.client() as c:
        listing = await c.list(pods_path(), objects.Pod, page_size=3)
    assert [p.metadata.name for p in listing.items] == [f"p{i}" for i in range(7)]
    assert listing.resource_version == str(api.rv) and api.list_calls == 3


async def test_informer_lists_watches_and_relists_on_gone(api: FakeApiServer) -> None:
    api.add_pod("a")
    api.add_pod("b")
    changes: list[tuple[str | None, str | None]] = []

    def on_change(old: objects.Pod | None, new: objects.Pod | None) -> None:
        changes.append((old and old.metadata.name, new and new.metadata.name))

    async with api.client() as c:
        inf = Informer(c, pods_path(), objects.Pod, meta=lambda p: p.metadata, on_change=on_change)
        task = asyncio.ensure_future(inf.run())
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert sorted(changes) == [(None, "a"), (None, "b")]
        new = api.add_pod("c")
        api.watch_queue.put_nowait(event_line("ADDED", new))
        api.watch_queue.put_nowait(
            event_line(
                "BOOKMARK", {"metadata": {"resourceVersion": "999"}, "spec": {"containers": None}}
            )
        )
        # Pod b is deleted while the watch is expired: the relist must report it.
        del api.pods["default/b"]
        api.watch_queue.put_nowait(
            event_line(
                "ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            )
        )
        deadline = asyncio.get_running_loop().time() + 5
        while ("b", None) not in changes:
            assert asyncio.get_running_loop().time() < deadline, changes
            await asyncio.sleep(0.01)
        assert (None, "c") in changes
        assert inf.relists == 2 and set(inf.store) == {"default/a", "default/c"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_events_are_aggregated(api: FakeApiServer) -> None:
    async with api.client() as c:
        rec = EventRecorder(c, "test")
        task = asyncio.ensure_future(rec.run())
        ref = ObjectRef("Pod", "p", "default", "uid-p")
        rec.warn(ref, "FilteringFailed", "0/1 nodes fit")
        await rec.drain()
        for _ in range(3):
            rec.warn(ref, "FilteringFailed", "0/1 nodes fit")
        await rec.drain()
        rec.warn(ref, "Other", "x")
        await rec.drain()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    counts = sorted((e["reason"], e["count"]) for e in api.events.values())
    assert counts == [("FilteringFailed", 4), ("Other", 1)]
    event = next(e for e in api.events.values() if e["reason"] == "Other")
    assert event["involvedObject"]["uid"] == "uid-p" and event["type"] == "Warning"


async def test_only_one_of_two_candidates_leads(api: FakeApiServer) -> None:
    async with api.client() as c:
        a = LeaderElector(c, ElectionSettings("ns", "l", "a", lease_duration_s=15))
        b = LeaderElector(c, ElectionSettings("ns", "l", "b", lease_duration_s=15))
        assert await a.try_acquire_or_renew() is True
        assert await b.try_acquire_or_renew() is False
        assert await a.try_acquire_or_renew() is True
        await a.release()
        assert api.leases["l"]["spec"]["holderIdentity"] == ""
        assert await b.try_acquire_or_renew() is True
        assert api.leases["l"]["spec"]["leaseTransitions"] == 1
