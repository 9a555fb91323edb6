"""The simulator: the bundled default, the CLI faces, and clear errors for bad scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kantaloupe import cli
from kantaloupe.api.errors import InvalidScenarioError
from kantaloupe.sim import runner
from kantaloupe.sim.scenario import decode_scenario, load_scenario


def test_default_scenario_beats_whole_gpu_by_four() -> None:
    scenario, _ = load_scenario(None)
    shared = runner.run(scenario)
    whole = runner.run(scenario, whole_gpu=True)
    assert shared.placed["service"] >= 4 * whole.placed["service"] > 0
    assert shared.ledger is not None
    for d in shared.ledger.devices():
        assert d.used_memory_mib <= d.device.memory_mib and d.used_cores <= d.device.cores


def test_cli_json_has_the_promised_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"services_placed", "services_placed_whole_gpu", "pending"} <= out.keys()
    assert out["services_placed"] >= 4 * out["services_placed_whole_gpu"]


def test_cli_table_and_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    assert cli.main(["simulate", "--report", str(page)]) == 0
    out = capsys.readouterr().out
    assert "services placed" in out and "rtx4090-0" in out
    text = page.read_text()
    assert text.count("<rect") > 20 and "GPU memory slices" in text


def test_departures_free_capacity_for_waiting_pods(tmp_path: Path) -> None:
    scenario = decode_scenario(
        """
nodes: [{name: n, gpus: {model: RTX 4090, memory_mib: 1000}}]
workloads:
  - {name: first, kind: batch, resources: {nvidia.com/gpu: 1}, duration_s: 10}
  - {name: second, resources: {nvidia.com/gpu: 1}, arrive_s: 1}
""",
        "inline",
    )
    outcome = runner.run(scenario)
    assert outcome.placed == {"batch": 1, "service": 1}
    assert outcome.pending == {}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param("nodes: []\nworkloads: []", "$.nodes", id="no-nodes"),
        pytest.param(
            "nodes: [{name: n, gpus: {model: m, memory_mib: -1}}]\nworkloads: []",
            "$.nodes[0].gpus.memory_mib",
            id="negative-memory",
        ),
        pytest.param(
            "nodes: [{name: n, gpus: {model: m, memory_mib: 1, colour: red}}]\nworkloads: []",
            "colour",
            id="unknown-field",
        ),
        pytest.param("version: v2\nnodes: []\nworkloads: []", "version", id="unknown-version"),
        pytest.param("nodes: [\n", "YAML", id="broken-yaml"),
    ],
)
def test_bad_scenarios_name_file_and_field(text: str, where: str) -> None:
    with pytest.raises(InvalidScenarioError) as caught:
        decode_scenario(text, "bad.yaml")
    assert "bad.yaml" in str(caught.value) and where in str(caught.value)


def test_bad_request_in_scenario_names_the_workload() -> None:
    scenario = decode_scenario(
        "nodes: [{name: n, gpus: {model: m, memory_mib: 1}}]\n"
        "workloads: [{name: w, resources: {nvidia.com/gpumem-percentage: 150}}]",
        "bad.yaml",
    )
    with pytest.raises(InvalidScenarioError, match=r"workloads\[0\] \(w\).*must be 1-100"):
        runner.run(scenario)


def test_cli_exit_2_on_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("nodes: 3\nworkloads: []\n")
    assert cli.main(["simulate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    assert cli.main(["simulate", str(tmp_path / "missing.yaml")]) == 2
