"""Kubernetes Events (``core/v1``) a user finds with ``kubectl describe``.

:meth:`EventRecorder.record` never blocks and never fails: it queues, and one worker sends.
Repeats of the same (object, reason, message) within ``window_s`` become one Event whose
``count`` and ``lastTimestamp`` are patched (as client-go's correlator does), and a burst of
repeats between two sends costs one patch. The queue is bounded; overflow is dropped and counted.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Literal

from kantaloupe.kube import errors
from kantaloupe.kube.client import KubeClient, events_path
from kantaloupe.kube.objects import ObjectMeta

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
_MAX_MESSAGE: Final = 1024
_MAX_REMEMBERED: Final = 4096


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about."""

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = "v1"

    @classmethod
    def pod(cls, meta: ObjectMeta) -> ObjectRef:
        return cls("Pod", meta.name, meta.namespace, meta.uid)

    @classmethod
    def node(cls, name: str, uid: str = "") -> ObjectRef:
        # kubectl describe node finds events by involvedObject.uid == node name (kubelet's way).
        return cls("Node", name, "", uid or name)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Sent:
    name: str
    namespace: str
    count: int
    first: str
    at: float
    pending: int = 0
    queued: bool = False


@dataclass(slots=True)
class _Item:
    ref: ObjectRef
    reason: str
    message: str
    type: EventType
    key: tuple[str, str, str, str] = field(default=("", "", "", ""))


class EventRecorder:
    """Queues Events and sends them from :meth:`run` (start it under the task guard)."""

    def __init__(
        self,
        client: KubeClient | None,
        component: str,
        *,
        instance: str = "",
        default_namespace: str = "default",
        window_s: float = 600.0,
        max_queue: int = 1000,
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance or os.environ.get("HOSTNAME", "") or component
        self.default_namespace = default_namespace
        self.window_s = window_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        self._sent: OrderedDict[tuple[str, str, str, str], _Sent] = OrderedDict()
        self.dropped = 0
        self.sent = 0
        self.failed = 0

    def warn(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, reason, message, "Warning")

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, reason, message, "Normal")

    def record(self, ref: ObjectRef, reason: str, message: str, type_: EventType) -> None:
        message = message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
        key = (ref.uid or f"{ref.kind}/{ref.namespace}/{ref.name}", reason, message, type_)
        loop_time = asyncio.get_running_loop().time()
        sent = self._sent.get(key)
        if sent is not None and loop_time - sent.at < self.window_s:
            sent.pending += 1
            if sent.queued:
                return  # one patch will carry every repeat
            sent.queued = True
        try:
            self._queue.put_nowait(_Item(ref, reason, message, type_, key))
        except asyncio.QueueFull:
            self.dropped += 1
            if sent is not None:
                sent.queued = False

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._send(item)
                self.sent += 1
            except errors.KubeError as e:
                self.failed += 1
                log.warning(
                    "event not recorded",
                    extra={"reason": item.reason, "object": item.ref.name, "error": str(e)},
                )
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything queued so far was sent or failed (tests, shutdown)."""
        await self._queue.join()

    async def _send(self, item: _Item) -> None:
        if self.client is None:
            return
        loop_time = asyncio.get_running_loop().time()
        now = _now()
        sent = self._sent.get(item.key)
        if sent is not None and loop_time - sent.at < self.window_s:
            sent.count += max(sent.pending, 1)
            sent.pending, sent.queued, sent.at = 0, False, loop_time
            try:
                await self.client.request(
                    "PATCH",
                    f"{events_path(sent.namespace)}/{sent.name}",
                    body={"count": sent.count, "lastTimestamp": now},
                    content_type="application/merge-patch+json",
                    what="patch event",
                )
                return
            except errors.NotFoundError:
                pass  # expired by the API server's event TTL: create a fresh one
        namespace = item.ref.namespace or self.default_namespace
        name = f"{item.ref.name}.{os.urandom(8).hex()}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "kind": item.ref.kind,
                "name": item.ref.name,
                "namespace": item.ref.namespace,
                "uid": item.ref.uid,
                "apiVersion": item.ref.api_version,
            },
            "reason": item.reason,
            "message": item.message,
            "type": item.type,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        await self.client.request("POST", events_path(namespace), body=body, what="create event")
        self._sent[item.key] = _Sent(name, namespace, 1, now, loop_time)
        self._sent.move_to_end(item.key)
        while len(self._sent) > _MAX_REMEMBERED:
            self._sent.popitem(last=False)
