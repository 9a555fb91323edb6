"""Filter reserves synchronously, bind writes before binding, hand-offs queue per node."""

from __future__ import annotations

import asyncio

import pytest
from extender_support import lease, node, pod, world

from kantaloupe.api import keys
from kantaloupe.api.allocation import decode_allocation
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, decode_handoff, encode_handoff
from kantaloupe.extender import wire
from kantaloupe.extender.service import Timing, describe_failures
from kantaloupe.kube import errors as kube_errors


def filter_pod(w, p, names=("n1",)):  # type: ignore[no-untyped-def]
    w.writer.add(p)
    return w.extender.filter(wire.FilterArgs(p, tuple(names)))


def bind_args(p, node_name="n1"):  # type: ignore[no-untyped-def]
    return wire.BindArgs(p.metadata.name, p.metadata.namespace, p.metadata.uid, node_name)


def test_filter_returns_exactly_one_node() -> None:
    w = world()
    for n in ("n1", "n2", "n3"):
        w.add_node(node(n))
    result = filter_pod(w, pod("p"), ("n1", "n2", "n3", "ghost"))
    assert result.error == ""
    assert result.node_names is not None and len(result.node_names) == 1
    # kube-scheduler drops every node not returned; reasons are only worded on a miss.
    assert not result.failed_nodes and not result.failed_and_unresolvable_nodes


def test_a_miss_names_every_node_and_unregistered_ones_are_unresolvable() -> None:
    w = world()
    w.add_node(node("n1", gpus=1))
    whole = {"nvidia.com/gpu": "2"}
    result = filter_pod(w, pod("p", limits=whole), ("n1", "ghost"))
    assert not result.node_names
    assert "1/1 fit but 2 needed" in result.failed_nodes["n1"]
    assert set(result.failed_and_unresolvable_nodes) == {"ghost"}


def test_back_to_back_filters_never_share_an_exclusive_gpu() -> None:
    w = world()
    w.add_node(node("n1", gpus=2))
    whole = {"nvidia.com/gpu": "1"}
    results = [filter_pod(w, pod(f"p{i}", limits=whole)) for i in range(3)]
    assert [bool(r.node_names) for r in results] == [True, True, False]
    uuids = [w.state.ledger.placement(f"uid-p{i}").containers[0][0].uuid for i in range(2)]  # type: ignore[union-attr]
    assert len(set(uuids)) == 2
    assert "FilteringFailed" in w.events.reasons()
    message = next(m for _, r, m in w.events.items if r == "FilteringFailed")
    assert "0/1 nodes fit" in message and "(n1)" in message


def test_pod_without_gpu_passes_every_node() -> None:
    w = world()
    result = filter_pod(w, pod("cpu", limits={"cpu": "1"}), ("a", "b"))
    assert result.node_names == ["a", "b"]


def test_invalid_request_is_an_error_and_an_event() -> None:
    w = world()
    w.add_node(node("n1"))
    result = filter_pod(w, pod("bad", limits={"nvidia.com/gpu": "1", "nvidia.com/gpucores": "300"}))
    assert "must be 0-100" in result.error
    assert w.events.reasons() == ["GpuRequestInvalid"]
    assert w.metric("kantaloupe_annotation_decode_errors_total", {"kind": "pod_request"}) == 1


def test_follower_never_hands_out_devices() -> None:
    w = world()
    w.add_node(node("n1"))
    w.leader[0] = False
    result = filter_pod(w, pod("p"))
    assert result.error and not result.node_names
    assert w.state.ledger.placement("uid-p") is None


def test_stale_agent_lease_gets_no_new_pods() -> None:
    w = world()
    w.add_node(node("n1"), lease_ok=False)
    w.add_node(node("n2"))
    w.state.on_lease(None, lease("n1", w.clock.now - 100))
    result = filter_pod(w, pod("p"), ("n1",))
    assert not result.node_names
    assert "not ready" in result.failed_nodes["n1"]
    result = filter_pod(w, pod("p"), ("n1", "n2"))
    assert result.node_names == ["n2"]
    w.clock.now += 60  # n2's heartbeat goes stale too
    w.state.tick()
    assert not filter_pod(w, pod("q"), ("n1", "n2")).node_names
    assert "NodeAgentNotReady" in w.events.reasons()


async def test_bind_writes_allocation_and_handoff_before_the_binding() -> None:
    w = world()
    w.add_node(node("n1"))
    p = pod("p")
    filter_pod(w, p)
    assert (await w.extender.bind(bind_args(p))).error == ""
    assert w.writer.calls == [("patch", "p"), ("bind", "p")]
    stored = w.writer.pods["default/p"]
    ann = stored.metadata.annotations or {}
    alloc = decode_allocation(ann[keys.ALLOCATION])
    assert alloc.node == "n1" and alloc.containers[0][0].memory_mib == 4000
    handoff = decode_handoff(ann[keys.HANDOFF])
    assert handoff.phase == HandoffPhase.BINDING and handoff.node == "n1"
    assert stored.spec.node_name == "n1"
    assert w.state.ledger.is_bound("uid-p")
    # A retry after success is a no-op success.
    assert (await w.extender.bind(bind_args(p))).error == ""
    assert w.writer.calls.count(("bind", "p")) == 1


async def test_bind_without_reservation_places_on_the_asked_node() -> None:
    w = world()
    w.add_node(node("n1"))
    p = pod("p")
    w.writer.add(p)  # no filter: e.g. the extender restarted between filter and bind
    assert (await w.extender.bind(bind_args(p))).error == ""
    assert w.state.ledger.placement("uid-p") is not None


async def test_bind_of_a_recreated_pod_fails_cleanly() -> None:
    w = world()
    w.add_node(node("n1"))
    p = pod("p")
    filter_pod(w, p)
    w.writer.add(pod("p", uid="other"))
    result = await w.extender.bind(bind_args(p))
    assert "gone or was recreated" in result.error
    assert w.state.ledger.placement("uid-p") is None


async def test_overlapping_bind_waits_for_the_handoff_then_proceeds() -> None:
    w = world()
    w.add_node(node("n1", gpus=1))
    first, second = pod("a"), pod("b")
    filter_pod(w, first)
    filter_pod(w, second)
    assert (await w.extender.bind(bind_args(first))).error == ""
    waiting = asyncio.ensure_future(w.extender.bind(bind_args(second)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    assert ("patch", "b") not in w.writer.calls
    # The node agent finishes the first hand-off: the pod watch delivers DONE.
    done = w.writer.pods["default/a"]
    ann = dict(done.metadata.annotations or {})
    ann[keys.HANDOFF] = encode_handoff(HandoffV1(phase=HandoffPhase.DONE, node="n1", since=1.0))
    import msgspec

    w.state.on_pod(
        None,
        msgspec.structs.replace(
            done, metadata=msgspec.structs.replace(done.metadata, annotations=ann)
        ),
    )
    assert (await asyncio.wait_for(waiting, 2)).error == ""
    assert w.metric("kantaloupe_handoff_wait_seconds_count") == 1


async def test_overlapping_bind_gives_up_after_the_bind_timeout() -> None:
    w = world(timing=Timing(30.0, 0.05, 60.0))
    w.add_node(node("n1", gpus=1))
    first, second = pod("a"), pod("b")
    filter_pod(w, first)
    filter_pod(w, second)
    w.state.on_pod(None, first)  # names known, so it still blocks
    assert (await w.extender.bind(bind_args(first))).error == ""
    result = await w.extender.bind(bind_args(second))
    assert "still being handed to default/a" in result.error
    assert w.metric("kantaloupe_bind_failures_total", {"reason": "handoff_wait_timeout"}) == 1
    assert "BindingFailed" in w.events.reasons()


async def test_handoff_of_a_deleted_pod_is_released_at_once() -> None:
    w = world()
    w.add_node(node("n1", gpus=1))
    first, second = pod("a"), pod("b")
    filter_pod(w, first)
    filter_pod(w, second)
    assert (await w.extender.bind(bind_args(first))).error == ""
    w.state.on_pod(w.writer.pods["default/a"], None)  # deleted
    assert len(w.state.handoffs) == 0
    assert (await asyncio.wait_for(w.extender.bind(bind_args(second)), 1)).error == ""


async def test_bind_api_failure_releases_the_handoff_and_records_it() -> None:
    w = world()
    w.add_node(node("n1"))
    p = pod("p")
    filter_pod(w, p)
    w.writer.fail_bind = kube_errors.ServerError(500, "InternalError", "etcd down")
    result = await w.extender.bind(bind_args(p))
    assert "etcd down" in result.error
    assert len(w.state.handoffs) == 0
    assert w.metric("kantaloupe_bind_failures_total", {"reason": "api_error"}) == 1


def test_unbound_reservation_expires_after_the_ttl() -> None:
    w = world(timing=Timing(10.0, 1.0, 60.0))
    w.add_node(node("n1", gpus=1))
    filter_pod(w, pod("p", limits={"nvidia.com/gpu": "1"}))
    w.clock.now += 5
    assert w.extender.expire() == 0
    w.clock.now += 5
    assert w.extender.expire() == 1
    assert w.state.ledger.placement("uid-p") is None
    assert w.metric("kantaloupe_reservations_expired_total") == 1
    assert filter_pod(w, pod("q", limits={"nvidia.com/gpu": "1"})).node_names == ["n1"]


async def test_reservation_does_not_expire_while_its_bind_runs() -> None:
    w = world(timing=Timing(1.0, 5.0, 60.0))
    w.add_node(node("n1"))
    p = pod("p")
    filter_pod(w, p)
    w.writer.gate = asyncio.Event()
    task = asyncio.ensure_future(w.extender.bind(bind_args(p)))
    for _ in range(5):
        await asyncio.sleep(0)
    w.clock.now += 10
    assert w.extender.expire() == 0
    w.writer.gate.set()
    assert (await task).error == ""


def test_describe_failures_names_nodes_by_reason() -> None:
    text = describe_failures({"a": "r1", "b": "r1", "c": "r2"}, 4)
    assert text == "1/4 nodes fit: 2 node(s) r1 (a, b); 1 node(s) r2 (c)"


@pytest.mark.parametrize("policy,expect_same", [("binpack", True), ("spread", False)])
def test_node_policy_annotation(policy: str, expect_same: bool) -> None:
    w = world()
    w.add_node(node("n1"))
    w.add_node(node("n2"))
    ann = {keys.NODE_SCHEDULER_POLICY: policy}
    first = filter_pod(w, pod("a", annotations=ann), ("n1", "n2")).node_names
    second = filter_pod(w, pod("b", annotations=ann), ("n1", "n2")).node_names
    assert (first == second) is expect_same


def test_a_timed_out_hand_off_is_not_tracked_again_by_later_events() -> None:
    from kantaloupe.extender.state import Handoffs, InFlight

    released: list[str] = []
    handoffs = Handoffs(on_release=released.append)
    entry = InFlight("p", "n", frozenset({"GPU-1"}), 0.0)  # type: ignore[arg-type]
    handoffs.track(entry)
    assert handoffs.time_out("p") == entry
    handoffs.track(entry)  # the pod's stale `binding` document arrives again
    assert handoffs.get("p") is None and len(handoffs) == 0
    assert released == ["p"]
    handoffs.forget("p")
    handoffs.track(entry)
    assert handoffs.get("p") == entry


async def test_gpus_stay_busy_from_filter_until_the_hand_off_ends() -> None:
    w = world()
    w.add_node(node("n1"))
    p = pod("p")
    filter_pod(w, p)
    assert not w.state.ledger.is_settled("uid-p")
    assert (await w.extender.bind(bind_args(p))).error == ""
    assert not w.state.ledger.is_settled("uid-p")  # bound, but kubelet has not been served
    w.state.handoffs.release("uid-p")  # what a DONE document or a deleted pod leads to
    assert w.state.ledger.is_settled("uid-p")
