"""The trace policies on tiny hand-made clusters where the right choice is known."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.scheduling import fit, scoring
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Device, DeviceSlice, Node, Placement
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy, TaskShape, Workload
from kantaloupe.scheduling.requests import ContainerRequest, PodRequest

MILLI = 1000


def node(name: str, gpus: int, *, cpu: int = 64_000, model: str = "G2") -> Node:
    devices = tuple(
        Device(DeviceUuid(f"{name}/{i}"), i, model, MILLI, MILLI, 64) for i in range(gpus)
    )
    return Node(NodeName(name), devices, cpu_milli=cpu, memory_mib=1 << 20)


def use(ledger: Ledger, name: str, col: int, share: int, cpu: int = 0) -> None:
    uuid = DeviceUuid(f"{name}/{col}")
    ledger.add(
        Placement(
            PodUid(f"{name}-{col}-{share}"),
            NodeName(name),
            ((DeviceSlice(uuid, share, share),),),
            cpu_milli=cpu,
        )
    )


def task(share: int, count: int = 1, cpu: int = 1000) -> PodRequest:
    c = ContainerRequest("main", count, share, 0, share)
    return PodRequest(PodUid("t"), (c,), ("main",), 0, cpu_milli=cpu, memory_mib=1)


def choose(
    ledger: Ledger,
    request: PodRequest,
    policy: NodePolicy,
    gpu: GpuPolicy,
    workload: Workload | None = None,
) -> tuple[str, int]:
    defaults = fit.Defaults(node_policy=policy, gpu_policy=gpu, workload=workload)
    placement = fit.decide(ledger, request, defaults=defaults).placement
    assert placement is not None
    s = placement.containers[0][0]
    return placement.node, int(s.uuid.rsplit("/", 1)[1])


HALVES = Workload((TaskShape(1.0, 1, 500),))


def test_best_fit_takes_the_smallest_hole_fgd_keeps_holes_usable() -> None:
    # a: one card with 550 free; b: an empty card. A 500 task: best fit leaves a hole of 50
    # on a; FGD sees that a 50 hole is useless to the 500s that come next and b stays usable.
    ledger = Ledger([node("a", 1), node("b", 1)])
    use(ledger, "a", 0, 450)
    assert choose(ledger, task(500), NodePolicy.BEST_FIT, GpuPolicy.FRAGMENTATION) == ("a", 0)
    assert choose(
        ledger, task(500), NodePolicy.FRAGMENTATION_GRADIENT, GpuPolicy.FRAGMENTATION, HALVES
    ) == ("b", 0)


def test_fgd_chooses_the_gpu_on_the_node_too() -> None:
    # One node, cards with 550 and 1000 free: the GPU policy alone would fill the 550 card.
    ledger = Ledger([node("a", 2)])
    use(ledger, "a", 0, 450)
    assert choose(ledger, task(500), NodePolicy.BINPACK, GpuPolicy.FRAGMENTATION) == ("a", 0)
    assert choose(
        ledger, task(500), NodePolicy.FRAGMENTATION_GRADIENT, GpuPolicy.FRAGMENTATION, HALVES
    ) == ("a", 1)


def test_fgd_fills_an_exact_hole_first() -> None:
    ledger = Ledger([node("a", 2), node("b", 1)])
    use(ledger, "b", 0, 500)
    assert choose(
        ledger, task(500), NodePolicy.FRAGMENTATION_GRADIENT, GpuPolicy.FRAGMENTATION, HALVES
    ) == ("b", 0)


def test_fgd_does_not_starve_free_cards_of_cpu() -> None:
    # Whole-card tasks need 8 cores. Node a has two free cards and 9 cores left: a 2-core
    # sharing task there would strand a card. Node b has plenty of CPU.
    whole = Workload((TaskShape(1.0, 1, MILLI, cpu_milli=8000),))
    ledger = Ledger([node("a", 2, cpu=9000), node("b", 2, cpu=64_000)])
    assert (
        choose(
            ledger,
            task(300, cpu=2000),
            NodePolicy.FRAGMENTATION_GRADIENT,
            GpuPolicy.FRAGMENTATION,
            whole,
        )[0]
        == "b"
    )
    assert (
        choose(ledger, task(300, cpu=2000), NodePolicy.BEST_FIT, GpuPolicy.FRAGMENTATION)[0] == "a"
    )


def test_fgd_keeps_whole_nodes_for_eight_card_tasks() -> None:
    eights = Workload((TaskShape(1.0, 8, MILLI),))
    ledger = Ledger([node("a", 8), node("b", 8)])
    use(ledger, "b", 0, MILLI)
    assert (
        choose(
            ledger, task(MILLI), NodePolicy.FRAGMENTATION_GRADIENT, GpuPolicy.FRAGMENTATION, eights
        )[0]
        == "b"
    )


def test_hami_default_spreads_gpus_and_binpack_packs_them() -> None:
    ledger = Ledger([node("a", 2)])
    use(ledger, "a", 0, 300)
    assert choose(ledger, task(200), NodePolicy.BINPACK, GpuPolicy.SPREAD) == ("a", 1)
    assert choose(ledger, task(200), NodePolicy.BINPACK, GpuPolicy.BINPACK) == ("a", 0)


def reference_fragmentation(
    free: list[int], cpu: int, model: str, shapes: tuple[TaskShape, ...]
) -> float:
    """The paper's definition, written plainly."""
    gpu_shapes = [s for s in shapes if s.count > 0]
    total = sum(s.weight for s in gpu_shapes)
    frag = 0.0
    for s in gpu_shapes:
        hostable = (
            cpu >= s.cpu_milli
            and (not s.types or model.lower() in {t.lower() for t in s.types})
            and sum(f >= s.share_milli for f in free) >= s.count
        )
        frag += (
            s.weight
            / total
            * (sum(f for f in free if f < s.share_milli) if hostable else sum(free))
        )
    return frag


@pytest.mark.parametrize("seed", range(4))
def test_vector_deltas_match_the_plain_definition(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        shapes = tuple(
            TaskShape(
                rng.randint(1, 10),
                count := rng.choice([0, 1, 1, 1, 2, 4]),
                MILLI if count > 1 else rng.choice([100, 250, 470, 500, 810, MILLI]),
                rng.choice([0, 4000, 8000, 16000]),
                rng.choice([(), (), ("T4",)]),
            )
            for _ in range(rng.randint(1, 8))
        )
        workload = Workload(shapes)
        nodes = [
            node(f"n{i}", rng.choice([1, 2, 4, 8]), cpu=32_000, model=rng.choice(["T4", "G2"]))
            for i in range(5)
        ]
        ledger = Ledger(nodes)
        for n in nodes:
            for d in n.devices:
                share = rng.choice([0, 0, 0, 200, 470, 530, 810, MILLI])
                if share:
                    use(ledger, n.name, d.index, share, cpu=rng.choice([0, 4000, 16000]))
        a = ledger.arrays()
        rows = np.arange(len(nodes))
        count = rng.choice([1, 1, 2])
        share = rng.choice([100, 300, 470, MILLI]) if count == 1 else MILLI
        cpu_need = rng.choice([0, 2000, 8000])
        free = a.mem_total[rows] - a.mem_used[rows]
        fits = a.valid[rows] & (free >= share)
        got = scoring.fragmentation_deltas(
            a, rows, ContainerRequest("m", count, share, 0, share), fits, cpu_need, workload
        )
        for i, n in enumerate(nodes):
            before_free = [int(free[i, j]) for j in range(len(n.devices))]
            cpu = 32_000 - ledger.node_usage(n.name)[0]
            before = reference_fragmentation(before_free, cpu, n.devices[0].model, shapes)
            for j in range(len(n.devices)):
                if not fits[i, j]:
                    assert np.isinf(got[i, j])
                    continue
                after_free = list(before_free)
                taken = (
                    [j]
                    if count == 1
                    else [x for x in range(len(after_free)) if after_free[x] >= share][:count]
                )
                if len(taken) < count:
                    continue
                for x in taken:
                    after_free[x] -= share
                after = reference_fragmentation(
                    after_free, cpu - cpu_need, n.devices[0].model, shapes
                )
                assert got[i, j] == pytest.approx(after - before, abs=1e-6)
