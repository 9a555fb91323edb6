"""The node config and inventory files: defaults, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.node.config import CorePolicy, NodeConfig, load_config
from kantaloupe.node.devices import load_inventory


def write(tmp_path: Path, text: str, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_file_gives_defaults() -> None:
    assert load_config(None, "n") == NodeConfig()


def test_top_level_settings_and_node_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
version: v1
split_count: 4
memory_scaling: 1.5
core_utilization_policy: force
exclude: {uuids: [GPU-x], indexes: [3]}
nodes:
  - name: special
    split_count: 2
    exclude: {indexes: [1]}
""",
    )
    other = load_config(path, "other")
    assert other.split_count == 4
    assert other.memory_scaling == 1.5
    assert other.core_utilization_policy == CorePolicy.FORCE
    assert other.is_excluded("GPU-x", 0) and other.is_excluded("GPU-y", 3)
    special = load_config(path, "special")
    assert special.split_count == 2
    assert special.exclude_indexes == {1, 3}


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), "n") == NodeConfig()


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        pytest.param("split_count: 0", "split_count", ">= 1", id="split-zero"),
        pytest.param("split_count: ten", "split_count", "Expected `int", id="split-text"),
        pytest.param("splitcount: 4", "splitcount", "not a known setting", id="typo"),
        pytest.param("memory_scaling: 0", "memory_scaling", "> 0", id="scaling-zero"),
        pytest.param("core_utilization_policy: maybe", "core_utilization_policy", "", id="policy"),
        pytest.param("version: v2", "version", "write `version: v1`", id="version"),
        pytest.param("exclude: {indexes: [-1]}", "exclude.indexes[0]", ">= 0", id="index"),
        pytest.param("exclude: {names: [a]}", "exclude.names", "not a known", id="exclude-typo"),
        pytest.param("nodes: [{split_count: 2}]", "nodes[0].name", "is required", id="no-name"),
        pytest.param("nodes: [{name: a}, {name: a}]", "nodes[1].name", "twice", id="dup-node"),
        pytest.param("split_count: [", "", "not valid YAML", id="yaml"),
        pytest.param("- 1", "", "must be a mapping", id="list"),
    ],
)
def test_config_errors_name_file_and_field(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidConfigError) as info:
        load_config(path, "a")
    message = str(info.value)
    assert str(path) in message
    assert where in info.value.where
    assert words in message
    assert "\n" not in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="cannot be read"):
        load_config(tmp_path / "absent.yaml", "a")


INVENTORY = """
version: v1
devices:
  - {uuid: GPU-a, model: NVIDIA A10, memory_mib: 24000, numa: 1}
  - {uuid: GPU-b, model: NVIDIA A10, memory_mib: 24000, healthy: false}
"""


def test_inventory_lists_gpus_in_order(tmp_path: Path) -> None:
    gpus = load_inventory(write(tmp_path, INVENTORY))
    assert [(g.uuid, g.index, g.numa, g.healthy) for g in gpus] == [
        ("GPU-a", 0, 1, True),
        ("GPU-b", 1, 0, False),
    ]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        pytest.param(
            "devices: [{uuid: a, model: m}]", "devices[0].memory_mib", "required", id="no-memory"
        ),
        pytest.param(
            "devices: [{uuid: a, model: m, memory_mib: 0}]",
            "devices[0].memory_mib",
            ">= 1",
            id="memory-zero",
        ),
        pytest.param(
            "devices: [{uuid: a, model: m, memory_mib: 1, colour: red}]",
            "devices[0].colour",
            "not a known setting",
            id="unknown",
        ),
        pytest.param(
            "devices: [{uuid: a, model: m, memory_mib: 1}, {uuid: a, model: m, memory_mib: 1}]",
            "devices[1].uuid",
            "twice",
            id="dup-uuid",
        ),
        pytest.param(
            "devices: [{uuid: a, model: m, memory_mib: 1, index: 0},"
            " {uuid: b, model: m, memory_mib: 1, index: 0}]",
            "devices[1].index",
            "twice",
            id="dup-index",
        ),
        pytest.param(
            "devices: [{uuid: 'has space', model: m, memory_mib: 1}]",
            "devices[0].uuid",
            "",
            id="uuid-space",
        ),
        pytest.param("version: v0", "version", "v1", id="version"),
    ],
)
def test_inventory_errors_name_file_and_field(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidConfigError) as info:
        load_inventory(path)
    assert str(path) in str(info.value)
    assert where in info.value.where
    assert words in str(info.value)
