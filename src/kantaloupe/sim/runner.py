"""Replay a scenario through the scheduling core, and the same workload under whole-GPU use."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kantaloupe.api import resources
from kantaloupe.api.errors import InvalidRequestError, InvalidScenarioError
from kantaloupe.api.ids import DeviceUuid, NodeName
from kantaloupe.scheduling import fit
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Device, Node, Placement
from kantaloupe.scheduling.policy import parse_gpu_policy, parse_node_policy
from kantaloupe.scheduling.requests import ContainerSpec, PodRequest, parse_pod
from kantaloupe.sim.scenario import Scenario, Workload

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Pod:
    uid: str
    workload: str
    kind: str
    request: PodRequest
    arrive_s: float
    duration_s: float | None


@dataclass(slots=True)
class Outcome:
    """What happened to one run of a scenario."""

    placed: Counter[str] = field(default_factory=Counter)
    """Pods placed at least once, by kind (service / batch)."""
    pending: dict[str, str] = field(default_factory=dict)
    """Pods still waiting at the end, with the scheduler's summary of why."""
    memory_ratio: float = 0.0
    core_ratio: float = 0.0
    peak_memory_ratio: float = 0.0
    ledger: Ledger | None = None
    workload_of: dict[str, str] = field(default_factory=dict)


def build_nodes(scenario: Scenario) -> list[Node]:
    nodes: list[Node] = []
    for group in scenario.nodes:
        g = group.gpus
        for i in range(group.count):
            name = NodeName(group.name if group.count == 1 else f"{group.name}-{i}")
            devices = tuple(
                Device(
                    uuid=DeviceUuid(f"GPU-{name}-{j}"),
                    index=j,
                    model=g.model,
                    memory_mib=int(g.memory_mib * group.memory_scaling),
                    cores=int(g.cores * group.core_scaling),
                    split=g.split,
                    numa=j * g.numa_nodes // g.count,
                )
                for j in range(g.count)
            )
            nodes.append(
                Node(name, devices, cpu_milli=group.cpu_milli, memory_mib=group.memory_mib)
            )
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise InvalidScenarioError(
            "nodes[].name", names, "gives two nodes the same name", "rename one node group"
        )
    return nodes


def build_pods(scenario: Scenario, *, whole_gpu: bool = False) -> list[Pod]:
    pods: list[Pod] = []
    for w_index, w in enumerate(scenario.workloads):
        for r in range(w.replicas):
            uid = f"{w.name}-{r}"
            request = _request(w, uid, w_index, whole_gpu)
            pods.append(
                Pod(uid, w.name, w.kind, request, w.arrive_s + r * w.interval_s, w.duration_s)
            )
    return pods


def _request(w: Workload, uid: str, index: int, whole_gpu: bool) -> PodRequest:
    def spec(name: str, res: dict[str, int | str]) -> ContainerSpec:
        if whole_gpu:
            count = res.get(resources.GPU, 1)
            res = {resources.GPU: count}
        return ContainerSpec(name=name, limits=res)

    containers = [spec("main", w.resources)]
    if w.sidecar_resources is not None:
        containers.append(spec("sidecar", w.sidecar_resources))
    init = [spec("init", w.init_resources)] if w.init_resources is not None else []
    try:
        request = parse_pod(
            uid, w.annotations, containers, init, cpu_milli=w.cpu_milli, memory_mib=w.memory_mib
        )
    except InvalidRequestError as e:
        raise InvalidScenarioError(
            f"workloads[{index}] ({w.name})", e.value, e.problem, e.fix
        ) from e
    if request is None:
        raise InvalidScenarioError(
            f"workloads[{index}].resources",
            w.resources,
            "asks for no GPU resource",
            "add nvidia.com/gpu, nvidia.com/gpumem or nvidia.com/gpucores",
        )
    return request


def run(
    scenario: Scenario,
    *,
    whole_gpu: bool = False,
    defaults: fit.Defaults | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Arrivals in time order; a departure frees its devices and retries waiting pods (FIFO)."""
    if defaults is None:
        defaults = fit.Defaults(
            node_policy=parse_node_policy(scenario.node_policy, "node_policy")
            if scenario.node_policy
            else fit.Defaults().node_policy,
            gpu_policy=parse_gpu_policy(scenario.gpu_policy, "gpu_policy")
            if scenario.gpu_policy
            else fit.Defaults().gpu_policy,
        )
    ledger = Ledger(build_nodes(scenario))
    pods = build_pods(scenario, whole_gpu=whole_gpu)
    outcome = Outcome(ledger=ledger, workload_of={p.uid: p.workload for p in pods})
    events: list[tuple[float, int, int, Pod]] = []  # (time, 0=depart first / 1=arrive, seq, pod)
    for seq, pod in enumerate(pods):
        heapq.heappush(events, (pod.arrive_s, 1, seq, pod))
    waiting: dict[str, Pod] = {}
    reasons: dict[str, str] = {}
    seq = len(pods)
    done = 0
    total = len(pods) + sum(1 for p in pods if p.duration_s is not None)

    def try_place(pod: Pod, now: float) -> bool:
        nonlocal seq
        decision = fit.place(ledger, pod.request, defaults=defaults, now=now)
        if decision.placement is None:
            reasons[pod.uid] = decision.summary
            return False
        ledger.mark_bound(pod.uid)
        ledger.mark_settled(pod.uid)
        outcome.placed[pod.kind] += 1
        reasons.pop(pod.uid, None)
        if pod.duration_s is not None:
            seq += 1
            heapq.heappush(events, (now + pod.duration_s, 0, seq, pod))
        return True

    while events:
        now, kind, _, pod = heapq.heappop(events)
        done += 1
        if progress is not None:
            progress(done, total)
        if kind == 1:
            if not try_place(pod, now):
                waiting[pod.uid] = pod
            continue
        ledger.remove(pod.request.uid)
        for uid in list(waiting):
            if try_place(waiting[uid], now):
                del waiting[uid]
        _track_peak(outcome, ledger)
    _track_peak(outcome, ledger)
    outcome.pending = {uid: reasons.get(uid, "") for uid in waiting}
    outcome.memory_ratio, outcome.core_ratio = allocation_ratios(ledger)
    return outcome


def _track_peak(outcome: Outcome, ledger: Ledger) -> None:
    memory, _ = allocation_ratios(ledger)
    outcome.peak_memory_ratio = max(outcome.peak_memory_ratio, memory)


def allocation_ratios(ledger: Ledger) -> tuple[float, float]:
    """(memory allocated / memory, cores allocated / cores) over every GPU."""
    mem_total = mem_used = core_total = core_used = 0
    for d in ledger.devices():
        mem_total += d.device.memory_mib
        mem_used += d.used_memory_mib
        core_total += d.device.cores
        core_used += d.used_cores
    return (
        mem_used / mem_total if mem_total else 0.0,
        core_used / core_total if core_total else 0.0,
    )


def placements_by_device(ledger: Ledger) -> dict[DeviceUuid, list[tuple[str, int, int]]]:
    """Per GPU, the (pod, memory, cores) slices on it, for tables and pictures."""
    out: dict[DeviceUuid, list[tuple[str, int, int]]] = {}
    placement: Placement
    for placement in ledger.pods():
        for uuid, (memory, cores, _t) in placement.charges().items():
            out.setdefault(uuid, []).append((placement.pod, memory, cores))
    return out
