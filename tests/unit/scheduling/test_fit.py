"""Fit and choice: filters, policies, exclusivity, NUMA, init containers and reasons."""

from __future__ import annotations

import factories
import pytest

from kantaloupe.scheduling import fit
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy

BINPACK = fit.Defaults(NodePolicy.BINPACK, GpuPolicy.BINPACK)
SPREAD = fit.Defaults(NodePolicy.SPREAD, GpuPolicy.SPREAD)


def mixed_ledger() -> Ledger:
    return Ledger(
        [
            factories.node("a4070", 2, factories.RTX4070),
            factories.node("b4090", 2, factories.RTX4090),
        ]
    )


def place(ledger: Ledger, uid: str, defaults: fit.Defaults = BINPACK, **kw: object) -> fit.Decision:
    """Place, then bind and hand off at once (as a kubelet would right after the bind)."""
    decision = fit.place(ledger, factories.pod(uid, **kw), defaults=defaults)  # type: ignore[arg-type]
    if decision.placement is not None:
        ledger.mark_bound(uid)
        ledger.mark_settled(uid)
    return decision


def test_type_pin_and_exclusion() -> None:
    ledger = mixed_ledger()
    pinned = place(ledger, "p1", annotations={"nvidia.com/use-gputype": "4090"}, gpumem=1000)
    assert pinned.placement is not None and pinned.placement.node == "b4090"
    assert pinned.failed == {"a4070": "2/2 type mismatch"}
    excluded = place(ledger, "p2", annotations={"nvidia.com/nouse-gputype": "4090"}, gpumem=1000)
    assert excluded.placement is not None and excluded.placement.node == "a4070"


def test_uuid_selection_and_exclusion() -> None:
    ledger = mixed_ledger()
    chosen = place(ledger, "p1", annotations={"nvidia.com/use-gpuuuid": "GPU-b4090-1"}, gpumem=10)
    assert chosen.placement is not None
    assert chosen.placement.containers[0][0].uuid == "GPU-b4090-1"
    avoid = "GPU-a4070-0,GPU-a4070-1,GPU-b4090-0"
    other = place(ledger, "p2", annotations={"nvidia.com/nouse-gpuuuid": avoid}, gpumem=10)
    assert other.placement is not None
    assert other.placement.containers[0][0].uuid == "GPU-b4090-1"


def test_node_binpack_and_spread() -> None:
    ledger = Ledger(factories.fleet(nodes=3, gpus=2))
    first = place(ledger, "p1", gpumem=1000)
    assert first.placement is not None
    packed = place(ledger, "p2", gpumem=1000)
    assert packed.placement is not None and packed.placement.node == first.placement.node
    spread = place(ledger, "p3", SPREAD, gpumem=1000)
    assert spread.placement is not None and spread.placement.node != first.placement.node


def test_gpu_binpack_and_spread() -> None:
    ledger = Ledger([factories.node("n", 2)])
    place(ledger, "p1", gpumem=1000)
    packed = place(ledger, "p2", gpumem=1000)
    assert packed.placement is not None
    assert packed.placement.containers[0][0].uuid == "GPU-n-0"
    spread = place(ledger, "p3", fit.Defaults(NodePolicy.BINPACK, GpuPolicy.SPREAD), gpumem=1000)
    assert spread.placement is not None
    assert spread.placement.containers[0][0].uuid == "GPU-n-1"


def test_pod_policy_annotations_override_defaults() -> None:
    ledger = Ledger([factories.node("n", 2)])
    place(ledger, "p1", gpumem=1000)
    annotations = {"hami.io/gpu-scheduler-policy": "spread"}
    spread = place(ledger, "p2", annotations=annotations, gpumem=1000)
    assert spread.placement is not None
    assert spread.placement.containers[0][0].uuid == "GPU-n-1"


def test_whole_card_is_exclusive_both_ways() -> None:
    ledger = Ledger([factories.node("n", 1)])
    assert place(ledger, "whole", gpu=1).placement is not None
    blocked = place(ledger, "slice", gpumem=10)
    assert blocked.placement is None
    assert blocked.failed["n"] == "1/1 insufficient memory"
    ledger = Ledger([factories.node("n", 1)])
    assert place(ledger, "slice", gpumem=10, gpucores=10).placement is not None
    refused = place(ledger, "whole", gpumem=10, gpucores=100)
    assert refused.placement is None
    assert refused.failed["n"] == "1/1 insufficient cores"


def test_zero_core_request_refused_on_full_cores() -> None:
    ledger = Ledger([factories.node("n", 1)])
    assert place(ledger, "p1", gpumem=10, gpucores=100).placement is not None
    decision = place(ledger, "p2", gpumem=10)
    assert decision.placement is None
    assert decision.failed["n"] == "1/1 cores fully allocated"


def test_split_count_caps_tenants() -> None:
    ledger = Ledger([factories.node("n", 1, split=2)])
    assert place(ledger, "p1", gpumem=10).placement is not None
    assert place(ledger, "p2", gpumem=10).placement is not None
    third = place(ledger, "p3", gpumem=10)
    assert third.placement is None and third.failed["n"] == "1/1 all sharing slots taken"


def test_reasons_are_aggregated_per_node() -> None:
    ledger = Ledger([factories.node("n", 4)])
    place(ledger, "big", gpu=2)
    decision = place(ledger, "p", annotations={"nvidia.com/nouse-gpuuuid": "GPU-n-2"}, gpu=2)
    assert decision.placement is None
    assert (
        decision.failed["n"] == "2/4 insufficient memory, 1/4 UUID mismatch, 1/4 fit but 2 needed"
    )
    assert decision.summary.startswith("0/1 nodes fit: 1 node(s) 2/4 insufficient memory")


def test_unknown_candidate_is_reported_not_raised() -> None:
    decision = fit.decide(mixed_ledger(), factories.pod(gpumem=10), ["ghost", "a4070"])
    assert decision.placement is not None
    assert decision.failed == {"ghost": "no GPUs registered by the node agent"}
    assert decision.considered == 2


def test_unhealthy_gpu_gets_nothing() -> None:
    ledger = Ledger([factories.node("n", 1, healthy=False)])
    decision = place(ledger, "p", gpumem=10)
    assert decision.placement is None and decision.failed["n"] == "1/1 unhealthy"


def test_percentage_resolves_per_card() -> None:
    ledger = mixed_ledger()
    decision = place(
        ledger, "p", annotations={"nvidia.com/use-gputype": "4070"}, gpumem_percentage=50
    )
    assert decision.placement is not None
    assert decision.placement.containers[0][0].memory_mib == 12282 // 2


def test_numa_bind_keeps_gpus_on_one_numa_node() -> None:
    ledger = Ledger([factories.node("n", 4, numa_nodes=2)])
    place(ledger, "p0", annotations={"nvidia.com/use-gpuuuid": "GPU-n-0"}, gpu=1)
    bound = place(ledger, "p1", annotations={"nvidia.com/numa-bind": "true"}, gpu=2)
    assert bound.placement is not None
    assert {s.uuid for s in bound.placement.containers[0]} == {"GPU-n-2", "GPU-n-3"}
    refused = place(ledger, "p2", annotations={"nvidia.com/numa-bind": "true"}, gpu=2)
    assert refused.placement is None
    assert refused.failed["n"] == "3/4 insufficient memory, 1/4 fit but 2 needed"


def test_multi_gpu_prefers_one_numa_node_without_binding() -> None:
    ledger = Ledger([factories.node("n", 8, numa_nodes=2)])
    for uid, uuid in (("a", "GPU-n-0"), ("b", "GPU-n-5")):
        place(ledger, uid, annotations={"nvidia.com/use-gpuuuid": uuid}, gpu=1)
    decision = place(ledger, "p", gpu=3)
    assert decision.placement is not None
    chosen = {s.uuid for s in decision.placement.containers[0]}
    assert chosen in ({"GPU-n-1", "GPU-n-2", "GPU-n-3"}, {"GPU-n-4", "GPU-n-6", "GPU-n-7"})


def test_multi_gpu_spans_fewest_numa_nodes_when_needed() -> None:
    ledger = Ledger([factories.node("n", 8, numa_nodes=4)])
    decision = place(ledger, "p", gpu=5)
    assert decision.placement is not None
    numa = {int(s.uuid.rsplit("-", 1)[1]) // 2 for s in decision.placement.containers[0]}
    assert len(numa) == 3


def test_init_containers_charge_their_peak_not_the_sum() -> None:
    ledger = Ledger([factories.node("n", 1)])
    decision = place(
        ledger, "p", init=[{"gpumem": 8000}, {"gpumem": 9000}], gpumem=4000, gpucores=10
    )
    assert decision.placement is not None
    assert ledger.usage_of("GPU-n-0") == (9000, 10, 1)


def test_several_app_containers_add_up_on_one_card() -> None:
    from kantaloupe.scheduling.requests import ContainerSpec, parse_pod

    request = parse_pod(
        "p",
        {},
        [
            ContainerSpec("a", {"nvidia.com/gpumem": 10000}),
            ContainerSpec("b", {"nvidia.com/gpumem": 10000}),
            ContainerSpec("plain", {"cpu": "1"}),
        ],
    )
    assert request is not None
    ledger = Ledger([factories.node("n", 1)])
    decision = fit.place(ledger, request, defaults=BINPACK)
    assert decision.placement is not None
    assert decision.placement.containers[2] == ()
    assert ledger.usage_of("GPU-n-0") == (20000, 0, 2)
    again = fit.place(ledger, request, defaults=BINPACK)
    assert again.placement is not None  # a retry replaces, never doubles
    assert ledger.usage_of("GPU-n-0") == (20000, 0, 2)


def test_containers_that_fit_alone_but_not_together() -> None:
    from kantaloupe.scheduling.requests import ContainerSpec, parse_pod

    request = parse_pod(
        "p",
        {},
        [
            ContainerSpec("a", {"nvidia.com/gpumem": 15000}),
            ContainerSpec("b", {"nvidia.com/gpumem": 15000}),
        ],
    )
    assert request is not None
    decision = fit.place(Ledger([factories.node("n", 1)]), request)
    assert decision.placement is None
    assert decision.failed["n"] == "containers do not fit together"


def test_node_cpu_and_memory_must_fit() -> None:
    from kantaloupe.scheduling.requests import ContainerSpec, parse_pod

    ledger = Ledger([factories.node("n", 1, cpu_milli=4000, memory_mib=8192)])
    big = parse_pod("p", {}, [ContainerSpec("a", {"nvidia.com/gpumem": 10})], cpu_milli=5000)
    assert big is not None
    assert fit.place(ledger, big).failed["n"] == "insufficient CPU"
    ok = parse_pod("q", {}, [ContainerSpec("a", {"nvidia.com/gpumem": 10})], cpu_milli=3000)
    assert ok is not None and fit.place(ledger, ok).placement is not None
    assert ledger.node_usage("n") == (3000, 0)


def test_fragmentation_policy_keeps_whole_cards_free() -> None:
    ledger = Ledger([factories.node("n", 2)])
    frag = fit.Defaults(NodePolicy.BINPACK, GpuPolicy.FRAGMENTATION)
    place(ledger, "p1", frag, gpumem=20000)
    place(ledger, "p2", frag, gpumem=2000)
    assert ledger.usage_of("GPU-n-1") == (0, 0, 0)
    whole = fit.place(ledger, factories.pod("w", gpu=1), defaults=frag)
    assert whole.placement is not None


@pytest.mark.parametrize("policy", list(GpuPolicy))
def test_every_gpu_policy_places(policy: GpuPolicy) -> None:
    ledger = Ledger(factories.fleet(nodes=2, gpus=4))
    decision = fit.place(
        ledger, factories.pod(gpu=2, gpumem=1000), defaults=fit.Defaults(gpu_policy=policy)
    )
    assert decision.placement is not None


def test_gpus_with_a_hand_off_in_flight_are_avoided_while_others_fit() -> None:
    ledger = Ledger([factories.node("n", 2)])
    first = fit.place(ledger, factories.pod("p1", gpumem=1000), defaults=BINPACK)
    assert first.placement is not None
    busy = first.placement.containers[0][0].uuid
    second = fit.place(ledger, factories.pod("p2", gpumem=1000), defaults=BINPACK)
    assert second.placement is not None
    assert second.placement.containers[0][0].uuid != busy  # binpack would have stacked
    third = fit.place(ledger, factories.pod("p3", gpumem=1000), defaults=BINPACK)
    assert third.placement is not None  # every GPU busy: busy ones are used after all
    ledger.mark_settled("p1")
    ledger.mark_settled("p2")
    ledger.mark_settled("p3")
    assert not ledger.arrays().busy.any()


def test_removing_an_unsettled_pod_frees_its_busy_mark() -> None:
    ledger = Ledger([factories.node("n", 1)])
    fit.place(ledger, factories.pod("p1", gpumem=1000))
    assert ledger.arrays().busy.sum() == 1
    ledger.remove("p1")
    assert not ledger.arrays().busy.any()
