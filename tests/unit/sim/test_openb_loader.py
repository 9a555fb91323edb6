"""The openb trace loader: good files load, bad ones name file, row, field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError, InvalidScenarioError
from kantaloupe.scheduling.policy import WORKLOAD_VOLUME_EXPONENT
from kantaloupe.sim import openb
from kantaloupe.sim.trace_command import TRACE_DIR_ENV, resolve_trace_dir

NODES = """sn,cpu_milli,memory_mib,gpu,model
n-0,32000,262144,0,
n-1,96000,393216,8,G2
n-2,104000,524288,2,T4
"""
TASKS = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos
p-0,12000,16384,1,1000,,LS
p-1,6000,12288,1,460,,LS
p-2,4000,8192,0,0,,BE
p-3,88000,65536,8,1000,G2,LS
p-4,4000,8192,1,230,T4|G2,LS
"""


def write(tmp_path: Path, nodes: str = NODES, tasks: str = TASKS) -> Path:
    (tmp_path / openb.NODE_FILE).write_text(nodes)
    (tmp_path / openb.TASK_FILE).write_text(tasks)
    return tmp_path


def test_a_good_trace_loads(tmp_path: Path) -> None:
    trace = openb.load_trace(write(tmp_path))
    assert [n.gpus for n in trace.nodes] == [0, 8, 2]
    assert trace.gpu_count == 10
    assert trace.capacity_milli == 10_000
    p3 = trace.tasks[3]
    assert (p3.num_gpu, p3.gpu_milli, p3.gpu_spec) == (8, 1000, ("G2",))
    assert trace.tasks[4].gpu_spec == ("T4", "G2")
    assert [t.gpu_request_milli for t in trace.tasks] == [1000, 460, 0, 8000, 230]


def test_the_workload_counts_shapes(tmp_path: Path) -> None:
    trace = openb.load_trace(write(tmp_path))
    shapes = trace.workload(volume_exponent=0.0).shapes
    assert len(shapes) == 5
    assert {(s.count, s.share_milli) for s in shapes} >= {(8, 1000), (1, 460), (0, 0)}
    assert all(s.weight == 1.0 for s in shapes)  # one task of each


def test_the_default_workload_weighs_tasks_over_their_gpu_volume(tmp_path: Path) -> None:
    shapes = openb.load_trace(write(tmp_path)).workload().shapes
    assert len(shapes) == 4  # the CPU-only shape is left out: it never changes a choice
    weights = {(s.count, s.share_milli): s.weight for s in shapes}
    x = WORKLOAD_VOLUME_EXPONENT
    assert x < 0
    assert weights[(8, 1000)] == pytest.approx(8.0**x)
    assert weights[(1, 460)] == pytest.approx(0.46**x)
    volume = openb.load_trace(write(tmp_path)).workload(volume_exponent=1.0).shapes
    assert {(s.count, s.share_milli): s.weight for s in volume}[(8, 1000)] == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("nodes", "tasks", "where", "words"),
    [
        pytest.param(
            NODES.replace("memory_mib,", ""),
            TASKS,
            f"{openb.NODE_FILE}:1",
            "memory_mib",
            id="node-column-missing",
        ),
        pytest.param(
            NODES.replace("96000", "lots"),
            TASKS,
            f"{openb.NODE_FILE}:3 cpu_milli",
            "integer",
            id="node-cpu-not-integer",
        ),
        pytest.param(
            NODES.replace(",8,G2", ",-1,G2"),
            TASKS,
            f"{openb.NODE_FILE}:3 gpu",
            "0-64",
            id="negative-gpus",
        ),
        pytest.param(
            NODES.replace(",8,G2", ",8,"),
            TASKS,
            f"{openb.NODE_FILE}:3 model",
            "empty",
            id="gpu-node-without-model",
        ),
        pytest.param(
            NODES.replace("n-2", "n-1"),
            TASKS,
            f"{openb.NODE_FILE}:4 sn",
            "twice",
            id="duplicate-node",
        ),
        pytest.param(
            NODES,
            TASKS.replace("p-1,6000,12288,1,460", "p-1,6000,12288,1,1460"),
            f"{openb.TASK_FILE}:3 gpu_milli",
            "0-1000",
            id="share-over-a-card",
        ),
        pytest.param(
            NODES,
            TASKS.replace("p-2,4000,8192,0,0", "p-2,4000,8192,0,300"),
            f"{openb.TASK_FILE}:4 gpu_milli",
            "without GPUs",
            id="share-without-gpu",
        ),
        pytest.param(
            NODES,
            TASKS.replace("T4|G2", "V100"),
            f"{openb.TASK_FILE}:6 gpu_spec",
            "no GPU model",
            id="unknown-model",
        ),
        pytest.param(
            NODES,
            TASKS.replace("p-4,4000,8192,1,230", "p-4,4000,8192"),
            f"{openb.TASK_FILE}:6",
            "number of fields",
            id="short-row",
        ),
        pytest.param(
            NODES.replace("n-0,32000,262144,0,\n", ""),
            TASKS.replace("qos", "qos").replace("num_gpu", "gpus"),
            f"{openb.TASK_FILE}:1",
            "num_gpu",
            id="task-column-missing",
        ),
    ],
)
def test_bad_files_name_file_row_field_and_fix(
    tmp_path: Path, nodes: str, tasks: str, where: str, words: str
) -> None:
    with pytest.raises(InvalidScenarioError) as caught:
        openb.load_trace(write(tmp_path, nodes, tasks))
    assert where in caught.value.where
    assert words in str(caught.value)
    assert caught.value.fix


def test_a_spec_that_substring_matching_would_widen_is_refused(tmp_path: Path) -> None:
    nodes = NODES + "n-3,64000,262144,4,A100\nn-4,64000,262144,1,A10\n"
    tasks = TASKS.replace("T4|G2", "A10")
    with pytest.raises(InvalidScenarioError, match="would also match A100"):
        openb.load_trace(write(tmp_path, nodes, tasks))


def test_empty_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidScenarioError, match="no nodes"):
        openb.load_trace(write(tmp_path, nodes="sn,cpu_milli,memory_mib,gpu,model\n"))


def test_a_missing_file_says_what_to_copy(tmp_path: Path) -> None:
    (tmp_path / openb.NODE_FILE).write_text(NODES)
    with pytest.raises(InvalidScenarioError, match="missing"):
        openb.load_trace(tmp_path)


def test_a_missing_folder_points_at_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InvalidScenarioError, match="--trace-dir"):
        openb.load_trace(tmp_path / "nowhere")


def test_trace_dir_flag_wins_over_env(tmp_path: Path) -> None:
    flag = write(tmp_path)
    assert resolve_trace_dir(flag, {TRACE_DIR_ENV: str(tmp_path / "env")}) == flag


def test_trace_dir_env_is_used_without_flag(tmp_path: Path) -> None:
    env = write(tmp_path)
    assert resolve_trace_dir(None, {TRACE_DIR_ENV: str(env)}) == env


def test_a_trace_dir_without_the_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        resolve_trace_dir(None, {TRACE_DIR_ENV: str(tmp_path)})
    assert TRACE_DIR_ENV in caught.value.where
    assert "--trace-dir" in caught.value.fix


def test_simulate_trace_prints_one_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import json

    from kantaloupe.sim.trace_command import add_trace_arguments, run_trace

    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_trace_arguments(parser)
    trace_dir = str(write(tmp_path))
    args = parser.parse_args(
        ["--trace", "openb", "--trace-dir", trace_dir, "--policy", "all", "--json", "--seed", "1"]
    )
    args.seed.append(2)
    assert run_trace(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["policies"]) == set(openb.POLICIES)
    for figures in out["policies"].values():
        assert figures["seeds"] == [1, 2]
        assert 0 < figures["alloc_pct_at_100"] <= figures["alloc_pct_at_130"] <= 100


def test_simulate_trace_refuses_a_scenario_too(tmp_path: Path) -> None:
    import argparse

    from kantaloupe.sim.trace_command import run_trace

    args = argparse.Namespace(
        scenario=tmp_path / "x.yaml", report=None, trace="openb", trace_dir=tmp_path
    )
    with pytest.raises(InvalidConfigError, match="scenario"):
        run_trace(args)
