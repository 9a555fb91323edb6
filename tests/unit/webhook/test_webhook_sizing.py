"""``kantaloupe.io/llm``: the webhook fills ``gpumem`` from the model and records how."""

from __future__ import annotations

import pytest
from webhook_support import container, decide, gpu, patched, pod

from kantaloupe.api import keys, resources
from kantaloupe.api.sizing import decode_sizing
from kantaloupe.sizing import GpuModel, decide_from_annotation
from kantaloupe.webhook.mutation import DenialReason, Outcome

GPU, MEM, CORES = resources.GPU, resources.GPU_MEMORY, resources.GPU_CORES
TEXT = "model=qwen2.5-7b-instruct,dtype=bf16,max-tokens=8192,concurrency=4"
BIG = GpuModel("NVIDIA H100 80GB HBM3", 81559)
SMALL = GpuModel("Tesla T4", 15360)


def expected_mib(text: str = TEXT) -> int:
    return decide_from_annotation(text, ()).gpumem_mib


def test_fills_gpumem_and_records_the_computation() -> None:
    obj = pod(gpu({GPU: "1"}), annotations={keys.LLM: TEXT})
    decision = decide(obj, fleet=(BIG, SMALL))
    assert decision.outcome is Outcome.MUTATED
    after = patched(obj, decision)
    limits = after["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {GPU: "1", MEM: str(expected_mib())}, "shared slice: no cores default"
    record = decode_sizing(after["metadata"]["annotations"][keys.SIZING])
    assert record.gpumem_mib == expected_mib() and record.model == "qwen2.5-7b"
    assert record.fits == (BIG.name,)
    assert any(keys.LLM in w and str(expected_mib()) in w for w in decision.warnings)


def test_single_container_without_gpu_resources_becomes_a_slice() -> None:
    obj = pod(container(), annotations={keys.LLM: TEXT})
    after = patched(obj, decide(obj))
    assert after["spec"]["containers"][0]["resources"]["limits"] == {
        MEM: str(expected_mib()),
        GPU: "1",
    }
    assert after["spec"]["schedulerName"] == "kantaloupe-scheduler"


def test_tensor_parallel_sets_gpu_count_when_unset() -> None:
    text = TEXT + ",tensor-parallel=2"
    obj = pod(gpu({CORES: "50"}), annotations={keys.LLM: text})
    limits = patched(obj, decide(obj))["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {CORES: "50", MEM: str(expected_mib(text)), GPU: "2"}


def test_user_memory_wins_and_annotation_is_ignored() -> None:
    obj = pod(gpu({GPU: "1", MEM: "3000"}), annotations={keys.LLM: "model=no-such-model"})
    decision = decide(obj, fleet=(SMALL,))
    assert decision.allowed
    after = patched(obj, decision)
    assert after["spec"]["containers"][0]["resources"]["limits"][MEM] == "3000"
    assert keys.SIZING not in after["metadata"]["annotations"]


def test_only_gpu_containers_without_memory_are_sized() -> None:
    obj = pod(
        container("proxy"),
        gpu({GPU: "1"}, name="model"),
        gpu({MEM: "500"}, name="tokenizer"),
        annotations={keys.LLM: TEXT},
    )
    after = patched(obj, decide(obj))
    cs = after["spec"]["containers"]
    assert "resources" not in cs[0]
    assert cs[1]["resources"]["limits"][MEM] == str(expected_mib())
    assert cs[2]["resources"]["limits"][MEM] == "500"


def test_annotations_absent_map_is_created() -> None:
    obj = pod(gpu({GPU: "1"}))
    obj["metadata"]["annotations"] = {keys.LLM: TEXT}
    after = patched(obj, decide(obj))
    assert keys.SIZING in after["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("obj", "fleet", "reason", "fragments"),
    [
        pytest.param(
            pod(gpu({GPU: "1"}), annotations={keys.LLM: "model=gpt-9000"}),
            (),
            DenialReason.SIZING_INVALID,
            (keys.LLM,),
            id="unknown-model",
        ),
        pytest.param(
            pod(gpu({GPU: "1"}), annotations={keys.LLM: "qwen2.5-7b"}),
            (),
            DenialReason.SIZING_INVALID,
            ("not key=value",),
            id="malformed-text",
        ),
        pytest.param(
            pod(gpu({GPU: "1"}), annotations={keys.LLM: "model=qwen2.5-7b,max-tokens=lots"}),
            (),
            DenialReason.SIZING_INVALID,
            ("max-tokens", "8192"),
            id="bad-number",
        ),
        pytest.param(
            pod(gpu({GPU: "1"}), annotations={keys.LLM: TEXT}),
            (SMALL,),
            DenialReason.SIZING_NO_FIT,
            ("more than any GPU model", SMALL.name, "tensor-parallel"),
            id="no-gpu-model-holds-it",
        ),
        pytest.param(
            pod(container("a"), container("b"), annotations={keys.LLM: TEXT}),
            (),
            DenialReason.SIZING_INVALID,
            ("several containers", f"add {GPU}"),
            id="which-container-is-unclear",
        ),
    ],
)
def test_sizing_denials(
    obj: dict[str, object],
    fleet: tuple[GpuModel, ...],
    reason: DenialReason,
    fragments: tuple[str, ...],
) -> None:
    decision = decide(obj, fleet=fleet)
    assert decision.denial is not None, decision
    assert decision.denial.reason is reason and decision.denial.code == 400
    for fragment in fragments:
        assert fragment in decision.denial.message, decision.denial.message


def test_empty_fleet_never_refuses_for_fit() -> None:
    text = "model=qwen2.5-72b,dtype=fp32,max-tokens=128k,concurrency=64"
    obj = pod(gpu({GPU: "1"}), annotations={keys.LLM: text})
    assert decide(obj, fleet=()).allowed
    assert not decide(obj, fleet=(BIG,)).allowed
