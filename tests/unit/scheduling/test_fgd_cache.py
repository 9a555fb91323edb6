"""The fragmentation gradient's per-node cache: same scores as a cold computation, always."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.scheduling import scoring
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Device, DeviceSlice, Node, Placement
from kantaloupe.scheduling.policy import DEFAULT_WORKLOAD, TaskShape, Workload
from kantaloupe.scheduling.requests import ContainerRequest

MILLI = 1000


def node(name: str, gpus: int, cpu: int = 64_000) -> Node:
    devices = tuple(
        Device(DeviceUuid(f"{name}/{i}"), i, "G2", MILLI, MILLI, 8) for i in range(gpus)
    )
    return Node(NodeName(name), devices, cpu_milli=cpu, memory_mib=1 << 20)


def slice_of(name: str, col: int, memory: int, cores: int) -> DeviceSlice:
    return DeviceSlice(DeviceUuid(f"{name}/{col}"), memory, cores)


def cold(a: object, *args: object) -> np.ndarray:
    scoring.reset_caches()
    return scoring.fragmentation_deltas(a, *args)  # type: ignore[arg-type]


def test_row_version_moves_only_on_the_changed_row() -> None:
    ledger = Ledger([node("a", 2), node("b", 2)])
    before = ledger.arrays().row_version.copy()
    ledger.add(Placement(PodUid("p"), NodeName("b"), ((slice_of("b", 0, 300, 300),),)))
    after = ledger.arrays().row_version
    assert after[0] == before[0]
    assert after[1] > before[1]
    moved = after.copy()
    ledger.remove("p")
    assert ledger.arrays().row_version[1] > moved[1]
    assert ledger.arrays().row_version[0] == moved[0]


@pytest.mark.parametrize("seed", range(6))
def test_cached_deltas_equal_a_cold_computation(seed: int) -> None:
    rng = random.Random(seed)
    singles = [
        TaskShape(rng.randint(1, 9), 1, rng.choice([100, 250, 470, 810, MILLI]), cpu)
        for cpu in (0, 4000, 16000)
    ]
    workload = Workload((*singles, TaskShape(1.0, 2, MILLI)))
    nodes = [node(f"n{i}", rng.choice([1, 2, 4, 8]), rng.choice([0, 32_000])) for i in range(12)]
    ledger = Ledger(nodes, capacity=4)  # grows while nodes are added
    scoring.reset_caches()
    for step in range(60):
        n = rng.choice(nodes)
        if rng.random() < 0.2 and ledger.pods_on(n.name):
            ledger.remove(sorted(ledger.pods_on(n.name))[0])
        else:
            col = rng.randrange(len(n.devices))
            mem, cores = rng.choice([100, 300, 470]), rng.choice([50, 300, 470])
            ledger.add(
                Placement(
                    PodUid(f"p{step}"),
                    n.name,
                    ((slice_of(n.name, col, mem, cores),),),
                    cpu_milli=rng.choice([0, 2000]),
                )
            )
        a = ledger.arrays()
        rows = np.asarray(sorted(rng.sample(range(len(nodes)), rng.randint(1, len(nodes)))))
        c = ContainerRequest("m", 1, rng.choice([100, 200]), 0, rng.choice([50, 200]))
        free_mem = a.mem_total[rows] - a.mem_used[rows]
        free_core = a.core_total[rows] - a.core_used[rows]
        fits = a.valid[rows] & (free_mem >= c.memory_mib) & (free_core >= c.cores)
        warm = scoring.fragmentation_deltas(a, rows, c, fits, 1000, workload)
        again = scoring.fragmentation_deltas(a, rows, c, fits, 1000, DEFAULT_WORKLOAD)
        np.testing.assert_array_equal(warm, cold(a, rows, c, fits, 1000, workload))
        np.testing.assert_array_equal(again, cold(a, rows, c, fits, 1000, DEFAULT_WORKLOAD))
        if rng.random() < 0.5:  # leave the cache cold or warm for the next step
            scoring.reset_caches()


def test_cards_equal_in_free_share_but_not_in_memory_and_cores_are_scored_apart() -> None:
    ledger = Ledger([node("a", 2)])
    # Card 0: 500 memory and 600 cores free; card 1: 600 memory and 500 cores free.
    ledger.add(Placement(PodUid("p0"), NodeName("a"), ((slice_of("a", 0, 500, 400),),)))
    ledger.add(Placement(PodUid("p1"), NodeName("a"), ((slice_of("a", 1, 400, 500),),)))
    a = ledger.arrays()
    rows = np.asarray([0])
    c = ContainerRequest("m", 1, 300, 0, 100)  # leaves 200 (card 0) or 300 (card 1) free
    workload = Workload((TaskShape(1.0, 1, 250),))
    both = a.valid[rows]
    only0, only1 = both.copy(), both.copy()
    only0[0, 1] = only1[0, 0] = False
    got = scoring.fragmentation_deltas(a, rows, c, both, 0, workload)
    alone0 = scoring.fragmentation_deltas(a, rows, c, only0, 0, workload)
    alone1 = scoring.fragmentation_deltas(a, rows, c, only1, 0, workload)
    assert got[0, 0] == alone0[0, 0]
    assert got[0, 1] == alone1[0, 1]
    assert got[0, 0] != got[0, 1]


def test_reweighted_is_count_times_volume_to_the_power() -> None:
    rng = random.Random(7)
    shapes = tuple(
        TaskShape(float(rng.randint(1, 50)), count, rng.choice([50, 160, 470, MILLI]))
        for count in (1, 1, 1, 2, 8)
    )
    for exponent in (-1.5, 0.0, 1.0):
        got = Workload((*shapes, TaskShape(3.0, 0, 0))).reweighted(exponent).shapes
        assert [s.count for s in got] == [s.count for s in shapes]  # CPU-only left out
        for s, w in zip(shapes, got, strict=True):
            assert w.weight == pytest.approx(
                s.weight * (s.count * s.share_milli / MILLI) ** exponent
            )
