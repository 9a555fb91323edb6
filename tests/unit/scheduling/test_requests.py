"""HAMi's request semantics: defaults, precedence and refusals."""

from __future__ import annotations

import pytest

from kantaloupe.api.errors import InputError, InvalidRequestError
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy, Weights
from kantaloupe.scheduling.requests import ContainerSpec, parse_container, parse_pod


def container(**limits: object) -> ContainerSpec:
    return ContainerSpec("app", {f"nvidia.com/{k.replace('_', '-')}": v for k, v in limits.items()})


@pytest.mark.parametrize(
    ("limits", "count", "memory", "percent", "cores"),
    [
        pytest.param({"gpu": 1}, 1, 0, 100, 100, id="bare-gpu-is-whole-exclusive-card"),
        pytest.param({"gpu": 2}, 2, 0, 100, 100, id="two-whole-cards"),
        pytest.param({"gpumem": 4000}, 1, 4000, 0, 0, id="memory-only-implies-one-card"),
        pytest.param({"gpucores": 30}, 1, 0, 100, 30, id="cores-only-implies-one-card"),
        pytest.param({"gpu": 1, "gpumem": 4000}, 1, 4000, 0, 0, id="memory-slice-shares-cores"),
        pytest.param(
            {"gpu": 1, "gpumem": 4000, "gpumem_percentage": 50},
            1,
            4000,
            0,
            0,
            id="gpumem-wins-over-percentage",
        ),
        pytest.param({"gpu": 1, "gpumem_percentage": 50}, 1, 0, 50, 0, id="percentage"),
        pytest.param(
            {"gpu": 1, "gpumem_percentage": 100}, 1, 0, 100, 100, id="percentage-100-is-exclusive"
        ),
        pytest.param({"gpu": 1, "gpucores": 100, "gpumem": 1000}, 1, 1000, 0, 100, id="cores-100"),
        pytest.param({"gpu": "1", "gpumem": "4k"}, 1, 4000, 0, 0, id="string-quantities"),
        pytest.param({"gpu": 1, "gpucores": 0}, 1, 0, 100, 0, id="explicit-zero-cores-kept"),
    ],
)
def test_defaults(
    limits: dict[str, object], count: int, memory: int, percent: int, cores: int
) -> None:
    parsed = parse_container(container(**limits))
    assert parsed is not None
    assert (parsed.count, parsed.memory_mib, parsed.memory_percent, parsed.cores) == (
        count,
        memory,
        percent,
        cores,
    )


def test_limits_win_over_requests() -> None:
    spec = ContainerSpec("app", {"nvidia.com/gpumem": "3000"}, {"nvidia.com/gpumem": "1000"})
    parsed = parse_container(spec)
    assert parsed is not None and parsed.memory_mib == 3000


def test_no_gpu_resource_is_not_a_gpu_container() -> None:
    assert parse_container(ContainerSpec("app", {"cpu": "1"})) is None
    assert parse_pod("u", {}, [ContainerSpec("app", {"cpu": "1"})]) is None
    assert parse_container(container(priority=1)) is None


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        pytest.param({"gpu": 0}, "nvidia.com/gpu", id="zero-gpus"),
        pytest.param({"gpu": -1}, "nvidia.com/gpu", id="negative-gpus"),
        pytest.param({"gpu": "one"}, "nvidia.com/gpu", id="non-numeric"),
        pytest.param({"gpu": "1.5"}, "nvidia.com/gpu", id="fraction"),
        pytest.param({"gpu": 1, "gpumem": 2**40}, "nvidia.com/gpumem", id="overflowing-memory"),
        pytest.param({"gpu": 1, "gpumem": 0}, "nvidia.com/gpumem", id="zero-memory"),
        pytest.param({"gpu": 1, "gpumem": "-5"}, "nvidia.com/gpumem", id="negative-memory"),
        pytest.param(
            {"gpu": 1, "gpumem_percentage": 150},
            "nvidia.com/gpumem-percentage",
            id="percent-over-100",
        ),
        pytest.param(
            {"gpu": 1, "gpumem_percentage": 0}, "nvidia.com/gpumem-percentage", id="percent-zero"
        ),
        pytest.param({"gpu": 1, "gpucores": 101}, "nvidia.com/gpucores", id="cores-over-100"),
        pytest.param({"gpu": 1, "priority": 2}, "nvidia.com/priority", id="priority-2"),
        pytest.param({"gpu": 100}, "nvidia.com/gpu", id="too-many-gpus"),
        pytest.param({"gpu": True}, "nvidia.com/gpu", id="boolean"),
    ],
)
def test_bad_quantities_name_the_field(limits: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_container(container(**limits))
    assert field in str(caught.value)
    assert "'app'" in str(caught.value)
    assert caught.value.fix


def test_percentage_message_points_to_gpumem() -> None:
    with pytest.raises(InvalidRequestError, match="use nvidia.com/gpumem for MiB"):
        parse_container(container(gpu=1, gpumem_percentage=150))


def test_pod_annotations_are_parsed() -> None:
    request = parse_pod(
        "u",
        {
            "nvidia.com/use-gputype": "4090, A100",
            "nvidia.com/nouse-gputype": "4070",
            "nvidia.com/use-gpuuuid": "GPU-a,GPU-b",
            "nvidia.com/nouse-gpuuuid": "GPU-c",
            "nvidia.com/numa-bind": "true",
            "hami.io/node-scheduler-policy": "spread",
            "hami.io/gpu-scheduler-policy": "binpack",
            "hami.io/device-scoring-weights": "slot=0,core=1,memory=2",
        },
        [container(gpu=1, gpumem=1000)],
        [ContainerSpec("init", {})],
    )
    assert request is not None
    c = request.constraints
    assert c.use_types == ("4090", "a100") and c.nouse_types == ("4070",)
    assert c.use_uuids == {"GPU-a", "GPU-b"} and c.nouse_uuids == {"GPU-c"}
    assert c.numa_bind
    assert request.node_policy is NodePolicy.SPREAD and request.gpu_policy is GpuPolicy.BINPACK
    assert request.weights == Weights(0, 1, 2)
    assert request.containers[0] is None and request.init_count == 1
    assert request.names == ("init", "app")


def test_type_match_is_case_insensitive_substring() -> None:
    request = parse_pod("u", {"nvidia.com/use-gputype": "RTX 4090"}, [container(gpu=1)])
    assert request is not None
    assert request.constraints.type_allowed("NVIDIA GeForce RTX 4090")
    assert not request.constraints.type_allowed("NVIDIA GeForce RTX 4070")


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        pytest.param({"hami.io/node-scheduler-policy": "fastest"}, "node-scheduler", id="node"),
        pytest.param({"hami.io/gpu-scheduler-policy": "random"}, "gpu-scheduler", id="gpu"),
        pytest.param({"hami.io/device-scoring-weights": "slot=1"}, "scoring-weights", id="weights"),
        pytest.param(
            {"hami.io/device-scoring-weights": "slot=0,core=0,memory=0"},
            "scoring-weights",
            id="weights-all-zero",
        ),
        pytest.param(
            {"hami.io/device-scoring-weights": "slot=x,core=1,memory=1"},
            "scoring-weights",
            id="weights-not-numbers",
        ),
        pytest.param({"nvidia.com/numa-bind": "yes"}, "numa-bind", id="numa-bind"),
    ],
)
def test_bad_annotations_raise_input_errors(annotations: dict[str, str], field: str) -> None:
    with pytest.raises(InputError, match=field):
        parse_pod("u", annotations, [container(gpu=1)])


def test_hami_policy_chains_keep_first_key() -> None:
    request = parse_pod("u", {"hami.io/gpu-scheduler-policy": "binpack,numa"}, [container(gpu=1)])
    assert request is not None and request.gpu_policy is GpuPolicy.BINPACK
