"""What the webhook fills in on GPU-slice pods (HAMi's defaults) and what it leaves alone."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_support import container, decide, gpu, patched, pod

from kantaloupe.api import keys, resources
from kantaloupe.webhook import mutation
from kantaloupe.webhook.mutation import Outcome, Settings

GPU, MEM, PCT, CORES = (
    resources.GPU,
    resources.GPU_MEMORY,
    resources.GPU_MEMORY_PERCENTAGE,
    resources.GPU_CORES,
)


def limits_of(obj: dict[str, Any], index: int = 0, kind: str = "containers") -> dict[str, str]:
    return dict(obj["spec"][kind][index]["resources"]["limits"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({GPU: "1"}, {GPU: "1", CORES: "100"}, id="bare-gpu-is-a-whole-card"),
        pytest.param({GPU: "2"}, {GPU: "2", CORES: "100"}, id="two-whole-cards"),
        pytest.param({MEM: "4000"}, {GPU: "1", MEM: "4000"}, id="memory-only-gets-one-card"),
        pytest.param({CORES: "30"}, {GPU: "1", CORES: "30"}, id="cores-only-gets-one-card"),
        pytest.param({PCT: "50"}, {GPU: "1", PCT: "50"}, id="percent-only-gets-one-card"),
        pytest.param(
            {PCT: "100"}, {GPU: "1", PCT: "100", CORES: "100"}, id="percent-100-is-exclusive"
        ),
        pytest.param(
            {GPU: "1", PCT: "100"}, {GPU: "1", PCT: "100", CORES: "100"}, id="gpu-percent-100"
        ),
        pytest.param(
            {GPU: "1", MEM: "4000", CORES: "30"},
            {GPU: "1", MEM: "4000", CORES: "30"},
            id="fully-specified-untouched",
        ),
        pytest.param({GPU: "1", CORES: "0"}, {GPU: "1", CORES: "0"}, id="explicit-zero-cores-kept"),
        pytest.param({GPU: "1", MEM: "4000"}, {GPU: "1", MEM: "4000"}, id="memory-shares-cores"),
    ],
)
def test_container_defaults(given: dict[str, str], expected: dict[str, str]) -> None:
    obj = pod(gpu(given))
    decision = decide(obj)
    assert decision.allowed and decision.gpu
    after = patched(obj, decision)
    assert limits_of(after) == expected
    assert after["spec"]["containers"][0]["resources"]["requests"] == expected
    assert after["spec"]["schedulerName"] == "kantaloupe-scheduler"


def test_defaults_go_into_limits_only_when_requests_are_absent() -> None:
    obj = pod(container(limits={MEM: "2000"}))
    after = patched(obj, decide(obj))
    assert limits_of(after) == {MEM: "2000", GPU: "1"}
    assert "requests" not in after["spec"]["containers"][0]["resources"]


def test_init_containers_and_several_containers_each_get_defaults() -> None:
    obj = pod(
        container("sidecar"),
        gpu({MEM: "1000"}, name="app"),
        init=[gpu({GPU: "1"}, name="warmup")],
    )
    after = patched(obj, decide(obj))
    assert limits_of(after, 0, "initContainers") == {GPU: "1", CORES: "100"}
    assert "resources" not in after["spec"]["containers"][0]
    assert limits_of(after, 1) == {MEM: "1000", GPU: "1"}


@pytest.mark.parametrize(
    ("scheduler", "settings", "expected"),
    [
        pytest.param(
            "default-scheduler", Settings(), "kantaloupe-scheduler", id="default-overwritten"
        ),
        pytest.param(None, Settings(), "kantaloupe-scheduler", id="unset-set"),
        pytest.param("volcano", Settings(), "volcano", id="other-scheduler-respected"),
        pytest.param(
            "default-scheduler",
            Settings(force_overwrite_default_scheduler=False),
            "default-scheduler",
            id="default-kept-when-not-forced",
        ),
        pytest.param(
            "default-scheduler",
            Settings(scheduler_name="gpu-sched"),
            "gpu-sched",
            id="configured-name",
        ),
    ],
)
def test_scheduler_name(scheduler: str | None, settings: Settings, expected: str) -> None:
    obj = pod(gpu({GPU: "1"}), scheduler=scheduler)
    decision = decide(obj, settings)
    assert patched(obj, decision)["spec"]["schedulerName"] == expected
    if expected not in (settings.scheduler_name,):
        assert any("names scheduler" in w for w in decision.warnings)


def test_already_ours_is_not_patched_again() -> None:
    obj = pod(gpu({GPU: "1", CORES: "100"}), scheduler="kantaloupe-scheduler")
    decision = decide(obj)
    assert decision.outcome is Outcome.ALLOWED and decision.patch == () and decision.gpu


@pytest.mark.parametrize(
    ("obj", "settings"),
    [
        pytest.param(pod(container()), Settings(), id="no-gpu-resources"),
        pytest.param(
            pod(container(limits={"cpu": "1"}, requests={"cpu": "1"})), Settings(), id="cpu-only"
        ),
        pytest.param(
            pod(gpu({GPU: "1"}), namespace="kube-system"),
            Settings(excluded_namespaces=frozenset({"kube-system"})),
            id="excluded-namespace",
        ),
        pytest.param(
            pod(gpu({GPU: "1"}), labels={keys.WEBHOOK_IGNORE_LABEL: keys.WEBHOOK_IGNORE_VALUE}),
            Settings(),
            id="ignore-label",
        ),
        pytest.param(
            pod(gpu({GPU: "1"}, privileged=True), namespace="ops"),
            Settings(excluded_namespaces=frozenset({"ops"})),
            id="excluded-namespace-not-validated",
        ),
    ],
)
def test_untouched(obj: dict[str, Any], settings: Settings) -> None:
    decision = decide(obj, settings)
    assert decision.allowed and decision.patch == ()
    assert decision.outcome in (Outcome.ALLOWED, Outcome.SKIPPED)


def test_runtime_class_is_set_only_when_configured_and_absent() -> None:
    settings = Settings(runtime_class_name="nvidia")
    obj = pod(gpu({GPU: "1"}))
    assert patched(obj, decide(obj, settings))["spec"]["runtimeClassName"] == "nvidia"
    mine = pod(gpu({GPU: "1"}), runtime_class="kata")
    assert patched(mine, decide(mine, settings))["spec"]["runtimeClassName"] == "kata"
    assert "runtimeClassName" not in patched(obj, decide(obj))["spec"]
    plain = pod(container())
    assert decide(plain, settings).patch == ()


def test_privileged_allowed_when_configured() -> None:
    obj = pod(gpu({GPU: "1"}, privileged=True))
    decision = decide(obj, Settings(deny_privileged=False))
    assert decision.allowed and decision.outcome is Outcome.MUTATED


def test_pointer_escaping() -> None:
    assert mutation.escape_pointer("nvidia.com/gpu") == "nvidia.com~1gpu"
    assert mutation.escape_pointer("a~b/c") == "a~0b~1c"


def test_trusted_service_account_may_create_with_internal_annotations() -> None:
    obj = pod(gpu({GPU: "1"}), annotations={keys.ALLOCATION: "{}"})
    user = {"username": "system:serviceaccount:kantaloupe:kantaloupe-scheduler", "groups": []}
    decision = decide(obj, user=user)
    assert decision.allowed and decision.outcome is Outcome.MUTATED


def test_trusted_group() -> None:
    obj = pod(container(), annotations={keys.HANDOFF: "{}"})
    settings = Settings(trusted_service_accounts=frozenset({"system:serviceaccounts:kantaloupe"}))
    user = {
        "username": "system:serviceaccount:kantaloupe:x",
        "groups": ["system:serviceaccounts:kantaloupe"],
    }
    assert decide(obj, settings, user=user).allowed


def test_update_leaving_internal_annotations_alone_is_allowed() -> None:
    old = pod(gpu({GPU: "1"}), annotations={keys.ALLOCATION: "{}"})
    new = pod(gpu({GPU: "1"}), annotations={keys.ALLOCATION: "{}", "team": "a"})
    decision = decide(new, operation="UPDATE", old=old)
    assert decision.allowed and decision.patch == ()
