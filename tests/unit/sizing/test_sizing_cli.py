"""``kantaloupe size`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kantaloupe import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["size", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_human_output_shows_breakdown_recommendation_and_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "qwen2.5-7b-instruct", "--dtype", "bf16", "--max-tokens", "8192",
        "--concurrency", "4", "--gpu", "RTX 4090", "--gpu", "T4",
    )  # fmt: skip
    assert code == 0
    for part in ("weights", "KV cache", "activations", "engine reserve", "CUDA context", "total"):
        assert part in out
    assert "recommend: nvidia.com/gpumem: " in out
    assert "RTX 4090" in out
    assert "T4" in out


def test_json_output_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "llama-3.1-8b-instruct", "--max-tokens", "8k", "--json")
    assert code == 0
    doc = json.loads(out)
    parts = doc["breakdown_mib"]
    assert doc["model"] == "llama-3.1-8b"
    assert doc["max_tokens"] == 8192
    assert doc["gpumem_mib"] >= parts["total"]
    assert parts["total"] >= sum(v for k, v in parts.items() if k != "total") - 5
    assert doc["fleet_source"] == "the GPU catalogue"
    by_gpu = {f["gpu"]: f["per_card"] for f in doc["fleet"]}
    assert by_gpu["H100 80GB"] >= 3
    assert by_gpu["RTX 4070"] == 0


def test_env_sets_a_default_and_the_flag_wins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANTALOUPE_MAX_TOKENS", "1024")
    _, out, _ = run(capsys, "qwen2.5-0.5b", "--json")
    assert json.loads(out)["max_tokens"] == 1024
    _, out, _ = run(capsys, "qwen2.5-0.5b", "--json", "--max-tokens", "2048")
    assert json.loads(out)["max_tokens"] == 2048


def test_fleet_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("version: v1\ngpus:\n  - model: L4\n  - {model: Custom, memory_mib: 30000}\n")
    code, out, _ = run(capsys, "gemma-2-9b-it", "--fleet", str(fleet), "--json")
    assert code == 0
    assert [f["gpu"] for f in json.loads(out)["fleet"]] == ["L4", "Custom"]


def test_config_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 2048,
                "intermediate_size": 8192,
                "num_attention_heads": 32,
                "num_hidden_layers": 16,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "tie_word_embeddings": True,
                "torch_dtype": "bfloat16",
                "quantization_config": {"quant_method": "awq", "bits": 4},
            }
        )
    )
    code, out, _ = run(capsys, "--config-json", str(model_dir / "config.json"), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == "my-model"
    assert doc["dtype"] == "awq"


def test_list_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list-models")
    assert code == 0
    assert "mixtral-8x7b" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param(["qwen2.5-7b-instrct"], "did you mean qwen2.5-7b-instruct", id="typo"),
        pytest.param([], "model=None: is missing", id="no-model"),
        pytest.param(["qwen2.5-7b", "--max-tokens", "many"], "--max-tokens", id="bad-tokens"),
        pytest.param(["qwen2.5-7b", "--gpu", "GTX 9999"], "NAME=MiB", id="unknown-gpu"),
        pytest.param(
            ["qwen2.5-7b", "--fleet", "/nonexistent.yaml"], "cannot be read", id="no-file"
        ),
        pytest.param(["--config-json", "/nonexistent.json"], "cannot be read", id="no-config"),
    ],
)
def test_input_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert fragment in err
    assert err.count("\n") == 1


def test_bad_fleet_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("version: v1\ngpus:\n  - {model: L4, memroy_mib: 3}\n")
    code, _, err = run(capsys, "qwen2.5-7b", "--fleet", str(fleet))
    assert code == 2
    assert "memroy_mib" in err
