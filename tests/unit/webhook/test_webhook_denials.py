"""Every refusal: its closed reason, its code, and a message that says what to do."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_support import ADMIN, container, decide, gpu, pod

from kantaloupe.api import keys, resources
from kantaloupe.webhook.mutation import DenialReason, Outcome, Settings

GPU, MEM, PCT, CORES = (
    resources.GPU,
    resources.GPU_MEMORY,
    resources.GPU_MEMORY_PERCENTAGE,
    resources.GPU_CORES,
)
R = DenialReason
CASES = [
    pytest.param(
        pod(gpu({GPU: "1"}), annotations={keys.ALLOCATION: '{"v":1}'}),
        R.INTERNAL_ANNOTATION,
        403,
        ("metadata.annotations[" + keys.ALLOCATION + "]", "test-admin", "remove the annotation"),
        id="forged-allocation",
    ),
    pytest.param(
        pod(container(), annotations={keys.HANDOFF: "x"}),
        R.INTERNAL_ANNOTATION,
        403,
        (keys.HANDOFF,),
        id="forged-handoff-even-without-gpu",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), annotations={keys.SIZING: "{}"}),
        R.INTERNAL_ANNOTATION,
        403,
        (keys.SIZING,),
        id="forged-sizing-record",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), annotations={keys.HAMI_DEVICES_ALLOCATED: "GPU-1,NVIDIA,1,0:;"}),
        R.INTERNAL_ANNOTATION,
        403,
        (keys.HAMI_DEVICES_ALLOCATED,),
        id="forged-hami-allocation",
    ),
    pytest.param(
        pod(
            gpu({GPU: "1"}),
            annotations={keys.HAMI_VGPU_NODE: "n1"},
            labels={keys.WEBHOOK_IGNORE_LABEL: keys.WEBHOOK_IGNORE_VALUE},
        ),
        R.INTERNAL_ANNOTATION,
        403,
        (keys.HAMI_VGPU_NODE,),
        id="ignore-label-does-not-bypass-the-guard",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}, privileged=True)),
        R.PRIVILEGED,
        403,
        ("containers['main'].securityContext.privileged", "drop privileged: true"),
        id="privileged",
    ),
    pytest.param(
        pod(container("side", privileged=True), gpu({MEM: "1000"}, name="app")),
        R.PRIVILEGED,
        403,
        ("containers['side']",),
        id="privileged-sidecar-of-gpu-pod",
    ),
    pytest.param(
        pod(container(), init=[gpu({GPU: "1"}, name="i", privileged=True)]),
        R.PRIVILEGED,
        403,
        ("initContainers['i']",),
        id="privileged-init-container",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), node_name="node-1"),
        R.NODE_NAME_SET,
        400,
        ("spec.nodeName", "'node-1'", "nodeSelector"),
        id="node-name-preset",
    ),
    pytest.param(
        pod(gpu({PCT: "150"})),
        R.INVALID_REQUEST,
        400,
        (PCT, "must be 1-100", "use nvidia.com/gpumem for MiB"),
        id="percent-over-100",
    ),
    pytest.param(
        pod(gpu({CORES: "120"})), R.INVALID_REQUEST, 400, (CORES, "0-100"), id="cores-over-100"
    ),
    pytest.param(pod(gpu({GPU: "0"})), R.INVALID_REQUEST, 400, (GPU, "1-64"), id="zero-gpus"),
    pytest.param(
        pod(gpu({MEM: "0"})), R.INVALID_REQUEST, 400, (MEM, "at least 1 MiB"), id="zero-memory"
    ),
    pytest.param(
        pod(gpu({MEM: "1.5"})),
        R.INVALID_REQUEST,
        400,
        (MEM, "whole number", "container 'main'"),
        id="fractional-memory",
    ),
    pytest.param(
        pod(gpu({resources.GPU: "1", resources.GPU_PRIORITY: "3"})),
        R.INVALID_REQUEST,
        400,
        (resources.GPU_PRIORITY, "0 or 1"),
        id="priority-out-of-range",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), annotations={keys.NUMA_BIND: "maybe"}),
        R.INVALID_REQUEST,
        400,
        (keys.NUMA_BIND, "true or false"),
        id="numa-bind-not-boolean",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), annotations={keys.GPU_SCHEDULER_POLICY: "fastest"}),
        R.INVALID_REQUEST,
        400,
        (keys.GPU_SCHEDULER_POLICY,),
        id="unknown-gpu-policy",
    ),
    pytest.param(
        pod(gpu({GPU: "1"}), init=[gpu({GPU: "65"}, name="init")]),
        R.INVALID_REQUEST,
        400,
        ("container 'init'",),
        id="init-container-checked",
    ),
]


@pytest.mark.parametrize(("obj", "reason", "code", "fragments"), CASES)
def test_denied(
    obj: dict[str, Any], reason: DenialReason, code: int, fragments: tuple[str, ...]
) -> None:
    decision = decide(obj)
    assert decision.outcome is Outcome.DENIED and not decision.allowed
    assert decision.patch == ()
    assert decision.denial is not None
    assert decision.denial.reason is reason
    assert decision.denial.code == code
    for fragment in fragments:
        assert fragment in decision.denial.message, decision.denial.message


@pytest.mark.parametrize(
    ("old_annotations", "new_annotations", "verb"),
    [
        pytest.param({}, {keys.ALLOCATION: "{}"}, "carries", id="added-on-update"),
        pytest.param({keys.ALLOCATION: "a"}, {keys.ALLOCATION: "b"}, "changes", id="changed"),
        pytest.param({keys.ALLOCATION: "a"}, {}, "removes", id="removed"),
        pytest.param({}, {keys.HAMI_DEVICES_TO_ALLOCATE: ";"}, "carries", id="hami-added"),
    ],
)
def test_update_of_internal_annotations_by_a_user_is_denied(
    old_annotations: dict[str, str], new_annotations: dict[str, str], verb: str
) -> None:
    old = pod(gpu({GPU: "1"}), annotations=old_annotations)
    new = pod(gpu({GPU: "1"}), annotations=new_annotations)
    decision = decide(new, operation="UPDATE", old=old)
    assert decision.denial is not None
    assert decision.denial.reason is R.INTERNAL_ANNOTATION and decision.denial.code == 403
    trusted = {"username": "system:serviceaccount:kantaloupe:kantaloupe-node-agent"}
    assert decide(new, operation="UPDATE", old=old, user=trusted).allowed
    if verb != "carries":
        assert verb in decision.denial.message


def test_forged_annotation_denied_even_in_excluded_namespace() -> None:
    obj = pod(container(), annotations={keys.ALLOCATION: "{}"}, namespace="ops")
    settings = Settings(excluded_namespaces=frozenset({"ops"}))
    decision = decide(obj, settings, user=ADMIN)
    assert decision.denial is not None and decision.denial.reason is R.INTERNAL_ANNOTATION


def test_trust_is_configurable() -> None:
    obj = pod(gpu({GPU: "1"}), annotations={keys.ALLOCATION: "{}"})
    assert decide(obj, Settings(trusted_service_accounts=frozenset({"test-admin"}))).allowed
    assert not decide(obj, Settings(trusted_service_accounts=frozenset())).allowed
