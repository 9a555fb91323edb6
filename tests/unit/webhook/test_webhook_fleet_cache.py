"""The sizing fleet from nodes' registrations: decoded once, malformed ones left out."""

from __future__ import annotations

from kantaloupe.api import keys, registration
from kantaloupe.kube import objects
from kantaloupe.webhook.fleet import FleetCache


def node(name: str, *devices: tuple[str, int], raw: str | None = None) -> objects.Node:
    doc = registration.NodeDevices(
        devices=tuple(
            registration.DeviceV1(
                uuid=f"GPU-{name}-{i}", index=i, model=m, memory_mib=mib, cores=100, split=10
            )
            for i, (m, mib) in enumerate(devices)
        )
    )
    text = raw if raw is not None else registration.encode_registration(doc)
    return objects.Node(
        metadata=objects.ObjectMeta(name=name, annotations={keys.NODE_DEVICES: text})
    )


def test_models_follow_adds_updates_and_deletes() -> None:
    cache = FleetCache()
    assert cache.models() == ()
    a = node("a", ("A100", 40960), ("A100", 40960))
    cache.on_change(None, a)
    cache.on_change(None, node("b", ("T4", 15360)))
    assert [(g.name, g.memory_mib) for g in cache.models()] == [("A100", 40960), ("T4", 15360)]
    cache.on_change(a, node("a", ("H100", 81559)))
    assert {g.name for g in cache.models()} == {"H100", "T4"}
    cache.on_change(node("b"), None)
    assert [g.name for g in cache.models()] == ["H100"]
    assert len(cache) == 1


def test_malformed_or_missing_registration_leaves_the_node_out() -> None:
    cache = FleetCache()
    good = node("a", ("A100", 40960))
    cache.on_change(None, good)
    cache.on_change(good, node("a", raw="{not json"))
    assert cache.models() == ()
    cache.on_change(None, objects.Node(metadata=objects.ObjectMeta(name="plain")))
    assert cache.models() == () and len(cache) == 0
