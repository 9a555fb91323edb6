"""The published method on a small slice of the real trace: invariants every policy keeps."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from kantaloupe.api.errors import InputError
from kantaloupe.sim import openb
from kantaloupe.sim.trace_command import resolve_trace_dir


@pytest.fixture(scope="module")
def trace() -> openb.Trace:
    try:
        directory = resolve_trace_dir(None)
    except InputError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"openb trace not found: {e}")
    full = openb.load_trace(directory)
    assert (len(full.nodes), full.gpu_count, len(full.tasks)) == (1523, 6212, 8152)
    # 48 nodes from the GPU part of the list, and a few hundred tasks; a quarter of the GPU tasks
    # pin the model of the first GPU node so that gpu_spec is exercised.
    gpu_nodes = tuple(n for n in full.nodes if n.gpus)[:40] + full.nodes[:8]
    model = gpu_nodes[0].model
    tasks = []
    for i, t in enumerate(full.tasks[:300]):
        if t.num_gpu and i % 4 == 0:
            t = openb.TraceTask(
                f"pinned-{t.name}", t.cpu_milli, t.memory_mib, t.num_gpu, t.gpu_milli, (model,)
            )
        tasks.append(t)
    return openb.Trace(gpu_nodes, tuple(tasks))


@pytest.fixture(scope="module")
def runs(trace: openb.Trace) -> list[openb.RunResult]:
    runs = [openb.run_method(trace, policy, 42, keep_ledger=True) for policy in openb.POLICIES]
    return [*runs, openb.run_method(trace, openb.BEST_POLICY, 43, keep_ledger=True)]


def test_inflation_reaches_the_target_and_keeps_every_task(trace: openb.Trace) -> None:
    tasks = openb.inflate(trace, 42)
    assert sum(t.gpu_request_milli for t in tasks) >= 1.3 * trace.capacity_milli
    assert set(trace.tasks) <= set(tasks)
    assert openb.inflate(trace, 42) == tasks
    assert openb.inflate(trace, 43) != tasks


def test_the_ratio_never_falls_and_never_passes_arrivals(runs: list[openb.RunResult]) -> None:
    for r in runs:
        assert all(a <= b + 1e-9 for a, b in zip(r.alloc_pct, r.alloc_pct[1:], strict=False))
        assert all(al <= ar + 1e-9 for al, ar in zip(r.alloc_pct, r.arrived_pct, strict=True))
        assert r.arrived_pct[-1] >= 130.0
        assert 0 < r.alloc_pct_at_100 <= r.alloc_pct_at_130 <= 100.0
        assert r.placed + r.failed == r.tasks


def test_no_gpu_cpu_or_memory_is_overcommitted(
    trace: openb.Trace, runs: list[openb.RunResult]
) -> None:
    nodes = {n.name: n for n in trace.nodes}
    for r in runs:
        assert r.ledger is not None
        allocated = 0
        for d in r.ledger.devices():
            assert d.used_memory_mib <= d.device.memory_mib == openb.MILLI
            assert d.used_cores <= d.device.cores
            allocated += d.used_memory_mib
        assert allocated == pytest.approx(r.alloc_pct[-1] * trace.capacity_milli / 100)
        for name, n in nodes.items():
            cpu, memory = r.ledger.node_usage(name)
            assert cpu <= n.cpu_milli
            assert memory <= n.memory_mib


def test_whole_card_and_multi_gpu_tasks_get_whole_cards(runs: list[openb.RunResult]) -> None:
    for r in runs:
        assert r.ledger is not None
        tenants: dict[str, int] = defaultdict(int)
        for p in r.ledger.pods():
            for container in p.containers:
                if len(container) > 1 or any(s.memory_mib == openb.MILLI for s in container):
                    for s in container:
                        assert s.memory_mib == openb.MILLI
                for s in container:
                    tenants[s.uuid] += 1
        for d in r.ledger.devices():
            if d.used_memory_mib == openb.MILLI and d.tenants == 1:
                continue
            assert d.tenants == tenants.get(d.device.uuid, 0)


def test_gpu_spec_is_respected(trace: openb.Trace, runs: list[openb.RunResult]) -> None:
    model = trace.tasks[0].gpu_spec or next(t.gpu_spec for t in trace.tasks if t.gpu_spec)
    node_model = {n.name: n.model for n in trace.nodes}
    pinned = 0
    for r in runs:
        assert r.ledger is not None
        for p in r.ledger.pods():
            if p.pod.startswith("pinned-"):
                pinned += 1
                assert node_model[p.node] in model
    assert pinned > 0


def test_policies_differ_and_fragmentation_gradient_packs_best(
    runs: list[openb.RunResult],
) -> None:
    by_policy: dict[str, float] = defaultdict(float)
    for r in runs:
        by_policy[r.policy] += r.alloc_pct_at_130
    assert len(set(by_policy.values())) > 1
    assert by_policy[openb.BEST_POLICY] >= by_policy["hami-default"]


def test_deduplicating_untouched_nodes_changes_no_decision(trace: openb.Trace) -> None:
    for policy in ("hami-default", openb.BEST_POLICY):
        fast = openb.run_method(trace, policy, 44, limit=100)
        slow = openb.run_method(trace, policy, 44, limit=100, dedupe=False)
        assert fast.alloc_pct == slow.alloc_pct


def test_an_unknown_policy_is_refused(trace: openb.Trace) -> None:
    with pytest.raises(InputError, match="--policy"):
        openb.run_method(trace, "first-fit", 42)


def test_the_allocation_at_a_level_is_read_after_the_crossing_task() -> None:
    assert openb.alloc_at([50.0, 99.0, 101.0, 131.0], [50.0, 90.0, 95.0, 96.0], 100.0) == 95.0
    assert openb.alloc_at([50.0], [40.0], 130.0) == 40.0


def test_the_trace_dir_default_is_beside_the_repository() -> None:
    from kantaloupe.sim.trace_command import default_trace_dir

    assert (
        default_trace_dir()
        == Path(__file__).resolve().parents[3].parent / "shared" / "data" / "openb"
    )
