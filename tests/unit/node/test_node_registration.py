"""Registration: written only when it changes; capacity totals; health changes."""

from __future__ import annotations

import dataclasses

from node_support import UUIDS, FakeNode, FakeSource, gpus

from kantaloupe.api import keys
from kantaloupe.api.registration import decode_registration
from kantaloupe.node.config import NodeConfig
from kantaloupe.node.devices import DeviceTable, to_registration
from kantaloupe.node.registration import Registrar


def registrar(node: FakeNode, source: FakeSource, config: NodeConfig | None = None) -> Registrar:
    table = DeviceTable(config or NodeConfig(split_count=5, memory_scaling=1.5))
    return Registrar(node, table, source, agent_version="t", publish_capacity=True)


async def test_first_publish_writes_then_nothing_until_a_change() -> None:
    node, source = FakeNode(), FakeSource(gpus(2))
    r = registrar(node, source)
    await r.discover()
    assert await r.publish()
    doc = decode_registration(node.annotations[keys.NODE_DEVICES])
    assert [(d.memory_mib, d.split, d.cores) for d in doc.devices] == [(36000, 5, 100)] * 2
    assert node.capacity == {"nvidia.com/gpumem": "72000", "nvidia.com/gpucores": "200"}

    await r.discover()
    assert not await r.publish()
    assert (node.annotation_writes, node.capacity_writes) == (1, 1)

    source.found = (dataclasses.replace(source.found[0], healthy=False), source.found[1])
    await r.discover()
    assert await r.publish()
    assert node.annotation_writes == 2
    assert node.capacity == {"nvidia.com/gpumem": "36000", "nvidia.com/gpucores": "100"}


async def test_a_restarted_agent_with_the_same_gpus_writes_nothing() -> None:
    config = NodeConfig(split_count=5, memory_scaling=1.5)
    existing = to_registration(gpus(2), config, "t")
    from kantaloupe.api.registration import encode_registration

    node = FakeNode({keys.NODE_DEVICES: encode_registration(existing)})
    r = Registrar(node, DeviceTable(config), FakeSource(gpus(2)), agent_version="t")
    await r.discover()
    assert not await r.publish()
    assert node.annotation_writes == 0


async def test_excluded_and_xid_unhealthy_gpus() -> None:
    node = FakeNode()
    config = NodeConfig(exclude_indexes=frozenset({0}), exclude_uuids=frozenset({UUIDS[2]}))
    table = DeviceTable(config)
    r = Registrar(node, table, FakeSource(gpus(4)), agent_version="t")
    await r.discover()
    table.mark_unhealthy(UUIDS[3], "XID 79")
    await r.publish()
    doc = decode_registration(node.annotations[keys.NODE_DEVICES])
    assert [(d.uuid, d.healthy) for d in doc.devices] == [(UUIDS[1], True), (UUIDS[3], False)]


async def test_table_wakes_watchers_on_change() -> None:
    import asyncio

    table = DeviceTable(NodeConfig())
    table.update(gpus(1))
    seen = table.version
    waiter = asyncio.create_task(table.wait_changed(seen))
    await asyncio.sleep(0)
    table.mark_unhealthy(UUIDS[0], "XID 48")
    assert await asyncio.wait_for(waiter, 1) == seen + 1
    assert not table.update(gpus(1))  # same discovery: no change
