"""Watch-fed state: registrations (ours, HAMi's, malformed), pods rebuilt from annotations."""

from __future__ import annotations

from extender_support import node, pod, registration, world

from kantaloupe.api import keys
from kantaloupe.api.allocation import AllocationV1, SliceV1, encode_allocation
from kantaloupe.extender import wire

HAMI_REGISTER = (
    '[{"id":"GPU-h0","count":10,"devmem":24576,"devcore":100,"type":"NVIDIA-A100","health":true},'
    '{"id":"GPU-h1","index":1,"count":10,"devmem":24576,"devcore":100,"type":"NVIDIA-A100",'
    '"health":true}]'
)


def test_malformed_registration_costs_only_that_node() -> None:
    w = world()
    w.add_node(node("good"))
    w.add_node(node("bad", {keys.NODE_DEVICES: '{"v":1,"devices":"nope"}'}))
    assert w.state.ledger.node("bad") is None and w.state.ledger.node("good") is not None
    assert w.events.reasons() == ["GpuRegistrationInvalid"]
    assert w.metric("kantaloupe_annotation_decode_errors_total", {"kind": "node_registration"}) == 1
    # The same bad value seen again (a status update) is not reported again.
    w.state.on_node(None, node("bad", {keys.NODE_DEVICES: '{"v":1,"devices":"nope"}'}))
    assert w.events.reasons() == ["GpuRegistrationInvalid"]
    result = w.extender.filter(wire.FilterArgs(pod("p"), ("good", "bad")))
    assert result.node_names == ["good"]


def test_registration_removed_gives_no_new_pods_and_an_event() -> None:
    w = world()
    w.add_node(node("n1"))
    w.state.on_node(None, node("n1", {}))
    assert w.state.ledger.node("n1") is None
    assert w.events.reasons() == ["GpuRegistrationMissing"]


def test_hami_registration_needs_no_lease() -> None:
    w = world()
    w.add_node(node("h", {keys.HAMI_NODE_REGISTER: HAMI_REGISTER}), lease_ok=False)
    result = w.extender.filter(
        wire.FilterArgs(pod("p", annotations={keys.USE_GPU_TYPE: "a100"}), ("h",))
    )
    assert result.node_names == ["h"]


def test_cordoned_node_gets_no_new_pods() -> None:
    w = world()
    w.add_node(node("n1", unschedulable=True))
    assert not w.extender.filter(wire.FilterArgs(pod("p"), ("n1",))).node_names


def test_ledger_is_rebuilt_from_our_and_hamis_annotations() -> None:
    w = world()
    w.add_node(node("n1", {keys.NODE_DEVICES: registration(1, prefix="GPU-n1")}))
    w.add_node(node("h", {keys.HAMI_NODE_REGISTER: HAMI_REGISTER}), lease_ok=False)
    ours = encode_allocation(
        AllocationV1(
            node="n1", containers=((SliceV1(uuid="GPU-n1-0", memory_mib=20000, cores=30),),)
        )
    )
    w.state.load_pods(
        [
            pod("ours", annotations={keys.ALLOCATION: ours}, node_name="n1", phase="Running"),
            pod(
                "theirs",
                node_name="h",
                phase="Running",
                annotations={
                    keys.HAMI_DEVICES_ALLOCATED: "GPU-h0,NVIDIA,10000,50:;",
                    keys.HAMI_VGPU_NODE: "h",
                },
            ),
            pod("done", node_name="n1", phase="Succeeded", annotations={keys.ALLOCATION: ours}),
        ]
    )
    assert w.state.ledger.usage_of("GPU-n1-0") == (20000, 30, 1)
    assert w.state.ledger.usage_of("GPU-h0") == (10000, 50, 1)
    assert w.state.ledger.is_bound("uid-ours")
    # 20000 of 24576 MiB are taken: a 8000 MiB pod does not fit on n1 any more.
    big = pod("big", limits={"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000"})
    assert not w.extender.filter(wire.FilterArgs(big, ("n1",))).node_names


def test_terminal_and_deleted_pods_release() -> None:
    w = world()
    w.add_node(node("n1", {keys.NODE_DEVICES: registration(1, prefix="GPU-n1")}))
    alloc = encode_allocation(
        AllocationV1(
            node="n1", containers=((SliceV1(uuid="GPU-n1-0", memory_mib=1000, cores=10),),)
        )
    )
    running = pod("p", annotations={keys.ALLOCATION: alloc}, node_name="n1", phase="Running")
    w.state.on_pod(None, running)
    assert w.state.ledger.usage_of("GPU-n1-0") == (1000, 10, 1)
    w.state.on_pod(
        running, pod("p", annotations={keys.ALLOCATION: alloc}, node_name="n1", phase="Failed")
    )
    assert w.state.ledger.usage_of("GPU-n1-0") == (0, 0, 0)
    w.state.on_pod(None, running)
    w.state.on_pod(running, None)
    assert w.state.ledger.usage_of("GPU-n1-0") == (0, 0, 0)


def test_malformed_pod_allocation_is_skipped_with_an_event() -> None:
    w = world()
    w.add_node(node("n1"))
    bad = pod("p", annotations={keys.ALLOCATION: "{not json"}, node_name="n1", phase="Running")
    w.state.on_pod(None, bad)
    w.state.on_pod(bad, bad)
    assert w.state.ledger.placement("uid-p") is None
    assert w.events.reasons() == ["GpuAllocationInvalid"]
    assert w.metric("kantaloupe_annotation_decode_errors_total", {"kind": "pod_allocation"}) == 1


def test_in_memory_reservation_wins_over_an_older_annotation_while_unbound() -> None:
    w = world()
    w.add_node(node("n1", gpus=2))
    p = pod("p", limits={"nvidia.com/gpu": "1"})
    w.extender.filter(wire.FilterArgs(p, ("n1",)))
    reserved = w.state.ledger.placement("uid-p")
    stale = encode_allocation(
        AllocationV1(node="n1", containers=((SliceV1(uuid="GPU-n1-1", memory_mib=1, cores=1),),))
    )
    w.state.on_pod(
        None, pod("p", limits={"nvidia.com/gpu": "1"}, annotations={keys.ALLOCATION: stale})
    )
    assert w.state.ledger.placement("uid-p") == reserved


def test_allocation_metrics_are_computed_at_scrape_time() -> None:
    w = world()
    w.add_node(node("n1", {keys.NODE_DEVICES: registration(1, prefix="GPU-n1")}))
    w.state.on_pod(
        None,
        pod(
            "p",
            annotations={
                keys.ALLOCATION: encode_allocation(
                    AllocationV1(
                        node="n1",
                        containers=((SliceV1(uuid="GPU-n1-0", memory_mib=1000, cores=25),),),
                    )
                )
            },
            node_name="n1",
            phase="Running",
        ),
    )
    from kantaloupe.extender.metrics import AllocationCollector, StateView

    w.registry.register(
        AllocationCollector(
            StateView(
                w.state.ledger,
                w.state.pod_name,
                lambda: len(w.state.handoffs),
                lambda: True,
                w.state.node_states,
            )
        )
    )
    dev = {
        "node": "n1",
        "device_uuid": "GPU-n1-0",
        "device_index": "0",
        "device_type": "NVIDIA-RTX-4090",
    }
    assert w.metric("hami_gpu_memory_allocated_bytes", {**dev, "device_cores": "100"}) == 1000 << 20
    assert w.metric("hami_gpu_core_allocated_ratio", dev) == 0.25
    assert w.metric("hami_gpu_shared_count", dev) == 1
    assert w.metric("hami_gpu_memory_limit_bytes", dev) == 24576 << 20
    vgpu = {
        "namespace": "default",
        "node": "n1",
        "pod": "p",
        "container_index": "0",
        "device_uuid": "GPU-n1-0",
    }
    assert w.metric("hami_vgpu_memory_allocated_bytes", vgpu) == 1000 << 20
    assert w.metric("kantaloupe_reservations_pending") == 0
    assert w.metric("kantaloupe_extender_nodes", {"state": "ready"}) == 1
    w.state.on_pod(None, None)
    w.state.forget_pod("uid-p")
    assert w.metric("hami_vgpu_memory_allocated_bytes", vgpu) is None
