"""Invariants that must hold for any sequence of fits, adds and removes."""

from __future__ import annotations

import factories
import strategies
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from kantaloupe.api.ids import PodUid
from kantaloupe.scheduling import fit
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Placement
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy
from kantaloupe.scheduling.requests import Constraints, PodRequest

MODELS = [factories.RTX4090, factories.RTX4070]


class LedgerMachine(RuleBasedStateMachine):
    placed = Bundle("placed")

    def __init__(self) -> None:
        super().__init__()
        nodes = [
            factories.node(f"n{i}", gpus=4, model=MODELS[i % 2], split=3, numa_nodes=2)
            for i in range(3)
        ]
        self.ledger = Ledger(nodes, width=2, capacity=1)  # forces the arrays to grow
        self.counter = 0
        self.requests: dict[str, PodRequest] = {}

    @rule(
        target=placed,
        request=strategies.pod_requests(uid="x"),
        node_policy=st.sampled_from(list(NodePolicy)),
        gpu_policy=st.sampled_from(list(GpuPolicy)),
        pin=st.sampled_from(["", "4090", "4070"]),
        avoid_uuid=st.sampled_from(["", "GPU-n0-0", "GPU-n1-3"]),
        numa_bind=st.booleans(),
    )
    def place(
        self,
        request: PodRequest,
        node_policy: NodePolicy,
        gpu_policy: GpuPolicy,
        pin: str,
        avoid_uuid: str,
        numa_bind: bool,
    ) -> str:
        self.counter += 1
        uid = f"pod-{self.counter}"
        constraints = Constraints(
            use_types=(pin,) if pin else (),
            nouse_uuids=frozenset({avoid_uuid}) if avoid_uuid else frozenset(),  # type: ignore[arg-type]
            numa_bind=numa_bind,
        )
        request = PodRequest(
            uid=PodUid(uid),
            containers=request.containers,
            names=request.names,
            init_count=0,
            constraints=constraints,
        )
        self.requests[uid] = request
        decision = fit.place(self.ledger, request, defaults=fit.Defaults(node_policy, gpu_policy))
        if decision.placement is not None:
            self._check_constraints(request, decision.placement)
        return uid

    def _check_constraints(self, request: PodRequest, placement: Placement) -> None:
        node = self.ledger.node(placement.node)
        assert node is not None
        by_uuid = {d.uuid: d for d in node.devices}
        for c, slices in zip(request.containers, placement.containers, strict=True):
            assert c is not None and len(slices) == c.count
            assert len({s.uuid for s in slices}) == c.count
            for s in slices:
                d = by_uuid[s.uuid]
                assert request.constraints.type_allowed(d.model)
                assert request.constraints.uuid_allowed(d.uuid)
            if request.constraints.numa_bind:
                assert len({by_uuid[s.uuid].numa for s in slices}) == 1

    @rule(uid=consumes(placed))
    def remove(self, uid: str) -> None:
        self.ledger.remove(uid)
        assert self.ledger.placement(uid) is None
        assert self.ledger.remove(uid) is None  # idempotent

    @rule(uid=placed)
    def re_add_is_idempotent(self, uid: str) -> None:
        placement = self.ledger.placement(uid)
        if placement is not None:
            before = list(self.ledger.devices())
            assert not self.ledger.add(placement)
            assert list(self.ledger.devices()) == before

    @rule(uid=placed)
    def settle(self, uid: str) -> None:
        self.ledger.mark_bound(uid)
        self.ledger.mark_settled(uid)
        assert not self.ledger.mark_settled(uid)  # idempotent

    @invariant()
    def busy_counts_unsettled_pods(self) -> None:
        expected: dict[str, int] = {}
        for p in self.ledger.pods():
            if not self.ledger.is_settled(p.pod):
                for uuid in {s.uuid for c in p.containers for s in c}:
                    expected[uuid] = expected.get(uuid, 0) + 1
        a = self.ledger.arrays()
        for uuid, (row, col) in a.where.items():
            assert a.busy[row, col] == expected.get(uuid, 0)

    @rule(index=st.integers(0, 2))
    def re_register_node(self, index: int) -> None:
        node = self.ledger.node(f"n{index}")
        assert node is not None
        self.ledger.set_node(node)

    @invariant()
    def never_overcommitted(self) -> None:
        for d in self.ledger.devices():
            assert 0 <= d.used_memory_mib <= d.device.memory_mib
            assert 0 <= d.used_cores <= d.device.cores
            assert 0 <= d.tenants <= d.device.split

    @invariant()
    def exclusive_means_alone(self) -> None:
        for p in self.ledger.pods():
            for container in p.containers:
                for s in container:
                    if s.cores == 100:
                        usage = self.ledger.usage_of(s.uuid)
                        assert usage is not None and usage[2] == 1

    @invariant()
    def usage_equals_sum_of_placements(self) -> None:
        expected: dict[str, tuple[int, int, int]] = {}
        for p in self.ledger.pods():
            for uuid, (m, c, t) in p.charges().items():
                old = expected.get(uuid, (0, 0, 0))
                expected[uuid] = (old[0] + m, old[1] + c, old[2] + t)
        for d in self.ledger.devices():
            got = (d.used_memory_mib, d.used_cores, d.tenants)
            assert got == expected.get(d.device.uuid, (0, 0, 0))


LedgerMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
test_ledger_state_machine = LedgerMachine.TestCase


def test_expired_reservations_are_released() -> None:
    ledger = Ledger([factories.node("n", 1)])
    fit.place(ledger, factories.pod("old", gpumem=1000), now=100.0)
    fit.place(ledger, factories.pod("bound", gpumem=1000), now=100.0)
    ledger.mark_bound("bound")
    fit.place(ledger, factories.pod("new", gpumem=1000), now=125.0)
    released = ledger.expire(now=131.0, ttl_s=30.0)
    assert [p.pod for p in released] == ["old"]
    assert sorted(uid for uid, _ in ledger.reservations()) == ["new"]
    assert ledger.usage_of("GPU-n-0") == (2000, 0, 2)


def test_placements_before_their_node_count_once_it_registers() -> None:
    ledger = Ledger()
    ledger.add(
        Placement(
            pod=PodUid("p"),
            node="n",  # type: ignore[arg-type]
            containers=((factories_slice("GPU-n-0", 1000),),),
        )
    )
    ledger.set_node(factories.node("n", 1))
    assert ledger.usage_of("GPU-n-0") == (1000, 0, 1)
    ledger.remove_node("n")
    assert ledger.usage_of("GPU-n-0") is None
    ledger.set_node(factories.node("n", 1))
    assert ledger.usage_of("GPU-n-0") == (1000, 0, 1)


def factories_slice(uuid: str, memory: int) -> object:
    from kantaloupe.scheduling.model import DeviceSlice

    return DeviceSlice(uuid, memory, 0)  # type: ignore[arg-type]
