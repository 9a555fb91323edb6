"""Tell the cluster what GPUs this node has: the registration annotation, capacity, heartbeat.

Every ``interval_s`` (and at once on a health change) the devices are discovered again; the
registration document (``kantaloupe.io/node-devices``) is written only when its encoding changed,
compared with what the Node already carries, so a restarted agent with the same GPUs writes
nothing. With ``publish_capacity`` the totals of ``nvidia.com/gpumem`` (MiB) and
``nvidia.com/gpucores`` (percent) over the healthy GPUs go into the node's capacity, again only
on change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol

from kantaloupe.api import keys, resources
from kantaloupe.api.registration import NodeDevicesV1, encode_registration
from kantaloupe.node.devices import DeviceSource, DeviceTable, to_registration

log = logging.getLogger(__name__)


class NodeAccess(Protocol):
    """Writes on this node's Node object (``kube.registering.NodeWriter`` or a fake)."""

    async def annotation(self, key: str) -> str | None: ...

    async def set_annotations(self, annotations: Mapping[str, str | None]) -> None: ...

    async def set_capacity(self, quantities: Mapping[str, str | None]) -> None: ...


class LeaseRenewer(Protocol):
    async def renew(self) -> None: ...


def capacity_of(doc: NodeDevicesV1) -> dict[str, str]:
    """``nvidia.com/gpumem`` and ``nvidia.com/gpucores`` totals over the healthy GPUs."""
    healthy = [d for d in doc.devices if d.healthy]
    return {
        resources.GPU_MEMORY: str(sum(d.memory_mib for d in healthy)),
        resources.GPU_CORES: str(sum(d.cores for d in healthy)),
    }


class Registrar:
    """Keeps the node's registration (and optionally capacity) in step with the device table."""

    def __init__(
        self,
        node: NodeAccess,
        table: DeviceTable,
        source: DeviceSource,
        *,
        agent_version: str,
        publish_capacity: bool = False,
    ) -> None:
        self._node = node
        self._table = table
        self._source = source
        self._agent_version = agent_version
        self._publish_capacity = publish_capacity
        self._published: str | None = None
        self._capacity: dict[str, str] | None = None
        self.writes = 0
        self.synced = False

    async def discover(self) -> None:
        self._table.update(await self._source.discover())

    async def publish(self) -> bool:
        """Write what changed since the last write; True when something was written."""
        doc = to_registration(self._table.gpus(), self._table.config, self._agent_version)
        encoded = encode_registration(doc)
        wrote = False
        if self._published is None:
            self._published = await self._node.annotation(keys.NODE_DEVICES)
        if encoded != self._published:
            await self._node.set_annotations({keys.NODE_DEVICES: encoded})
            self._published = encoded
            self.writes += 1
            wrote = True
            log.info("registration written", extra={"devices": len(doc.devices)})
        if self._publish_capacity:
            capacity = capacity_of(doc)
            if capacity != self._capacity:
                await self._node.set_capacity(capacity)
                self._capacity = capacity
                wrote = True
        self.synced = True
        return wrote

    async def run(self, interval_s: float, *, retry_s: float = 5.0) -> None:
        """Discover and publish forever: every ``interval_s``, or at once on a table change."""
        while True:
            seen = self._table.version
            try:
                await self.discover()
                await self.publish()
                wait_s = interval_s
            except Exception as e:
                log.warning("registration failed, retrying: %s", e)
                wait_s = retry_s
            if self._table.version != seen:
                continue  # discovery changed the table: publish it before waiting again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._table.wait_changed(seen), wait_s)


async def beat(lease: LeaseRenewer, interval_s: float, *, retry_s: float = 2.0) -> None:
    """Renew the agent's Lease every ``interval_s`` forever (sooner after a failure)."""
    while True:
        try:
            await lease.renew()
            wait_s = interval_s
        except Exception as e:
            log.warning("lease renewal failed: %s", e)
            wait_s = retry_s
        await asyncio.sleep(wait_s)
