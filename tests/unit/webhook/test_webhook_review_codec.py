"""The AdmissionReview v1 codec: the recorded apiserver request, responses, malformed bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from webhook_support import SAMPLE, apply_patch, gpu, patch_of, pod, response_of, review_body

from kantaloupe.api import keys, resources
from kantaloupe.webhook import mutation, review
from kantaloupe.webhook.server import Webhook, WebhookMetrics


def webhook(settings_: mutation.Settings | None = None) -> tuple[Webhook, CollectorRegistry]:
    registry = CollectorRegistry()
    return Webhook(settings_ or mutation.Settings(), WebhookMetrics(registry)), registry


def test_recorded_sample_decodes() -> None:
    rev = review.decode_review(SAMPLE.read_bytes())
    assert rev.uid == "f08ce419-99f1-4773-a328-3e1950502342"
    assert rev.operation is mutation.Operation.CREATE
    assert rev.user.username == "test-admin" and "system:masters" in rev.user.groups
    assert rev.pod is not None and rev.pod.display_name == "default/gpu-pod-2"
    assert rev.pod.annotations is None and rev.pod.scheduler_name == "default-scheduler"
    (c,) = rev.pod.containers
    assert c.limits == {resources.GPU: "1"} and c.requests == {resources.GPU: "1"}
    assert not c.privileged and rev.old_pod is None and not rev.dry_run


def test_recorded_sample_golden_response() -> None:
    hook, registry = webhook()
    reply = hook.answer(SAMPLE.read_bytes())
    assert reply.status == 200 and reply.content_type == "application/json"
    response = response_of(reply.body)
    assert response["uid"] == "f08ce419-99f1-4773-a328-3e1950502342"
    assert response["allowed"] is True
    assert patch_of(response) == [
        {
            "op": "add",
            "path": "/spec/containers/0/resources/limits/nvidia.com~1gpucores",
            "value": "100",
        },
        {
            "op": "add",
            "path": "/spec/containers/0/resources/requests/nvidia.com~1gpucores",
            "value": "100",
        },
        {"op": "add", "path": "/spec/schedulerName", "value": "kantaloupe-scheduler"},
    ]
    after = apply_patch(json.loads(SAMPLE.read_bytes())["request"]["object"], patch_of(response))
    assert after["spec"]["schedulerName"] == "kantaloupe-scheduler"
    sample = {"operation": "create", "result": "mutated"}
    assert registry.get_sample_value("kantaloupe_webhook_requests_total", sample) == 1
    assert registry.get_sample_value("kantaloupe_webhook_duration_seconds_count") == 1


def test_denial_response_shape_and_metrics() -> None:
    hook, registry = webhook()
    body = review_body(pod(gpu({resources.GPU: "1"}), annotations={keys.ALLOCATION: "{}"}))
    reply = hook.answer(body)
    response = response_of(reply.body)
    assert reply.status == 200
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 403 and response["status"]["reason"] == "Forbidden"
    assert keys.ALLOCATION in response["status"]["message"]
    assert response["uid"] == json.loads(body)["request"]["uid"]
    reason = {"reason": "internal_annotation"}
    assert registry.get_sample_value("kantaloupe_webhook_denials_total", reason) == 1
    assert (
        registry.get_sample_value("kantaloupe_webhook_denials_total", {"reason": "privileged"}) == 0
    )
    denied = {"operation": "create", "result": "denied"}
    assert registry.get_sample_value("kantaloupe_webhook_requests_total", denied) == 1


def test_allowed_without_patch_has_no_patch_type() -> None:
    hook, _ = webhook()
    response = response_of(hook.answer(review_body(pod())).body)
    assert response["allowed"] is True and "patchType" not in response and "patch" not in response


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}', id="v1beta1"
        ),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', id="no-request"
        ),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}',
            id="no-uid",
        ),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",'
            b'"object":{"spec":{"containers":"oops"}}}}',
            id="containers-not-a-list",
        ),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_malformed_bodies_are_http_400(body: bytes) -> None:
    hook, registry = webhook()
    reply = hook.answer(body)
    assert reply.status == 400 and reply.content_type == "text/plain"
    malformed = {"operation": "unknown", "result": "malformed"}
    assert registry.get_sample_value("kantaloupe_webhook_requests_total", malformed) == 1


def test_non_pod_resources_and_other_operations_pass() -> None:
    hook, _ = webhook()
    doc = json.loads(review_body(pod(gpu({resources.GPU: "1"}))))
    doc["request"]["resource"]["resource"] = "deployments"
    assert response_of(hook.answer(json.dumps(doc).encode()).body)["allowed"] is True
    doc = json.loads(review_body(pod(gpu({resources.GPU: "1"})), operation="DELETE"))
    response = response_of(hook.answer(json.dumps(doc).encode()).body)
    assert response["allowed"] is True and "patch" not in response


# ---- fuzz -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
quantities = st.one_of(
    st.sampled_from(["0", "1", "2", "100", "101", "4000", "1.5", "-1", "4Gi", "abc", ""]),
    st.integers(-5, 300),
)
resource_maps = st.dictionaries(st.sampled_from([*resources.ALL, "cpu"]), quantities, max_size=4)
containers = st.builds(
    lambda name, limits, requests, priv: {
        "name": name,
        **({"resources": {"limits": limits, "requests": requests}} if limits or requests else {}),
        **({"securityContext": {"privileged": priv}} if priv is not None else {}),
    },
    st.sampled_from(["a", "b", "c"]),
    resource_maps,
    resource_maps,
    st.none() | st.booleans(),
)
annotation_maps = st.none() | st.dictionaries(
    st.sampled_from([*mutation.PROTECTED_KEYS, keys.LLM, keys.NUMA_BIND, "x"]),
    st.sampled_from(["", "true", "{}", "model=qwen2.5-7b", "model=x", "1"]),
    max_size=3,
)
pods = st.builds(
    lambda cs, init, ann, sched, node: pod(
        *cs, init=init, annotations=ann, scheduler=sched, node_name=node
    ),
    st.lists(containers, min_size=1, max_size=3),
    st.lists(containers, max_size=2),
    annotation_maps,
    st.none() | st.sampled_from(["default-scheduler", "kantaloupe-scheduler", "other"]),
    st.none() | st.just("n1"),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
def test_any_body_gives_a_review_or_http_400(body: bytes) -> None:
    hook, _ = webhook()
    reply = hook.answer(body)
    assert reply.status in (200, 400)
    if reply.status == 200:
        assert isinstance(response_of(reply.body)["allowed"], bool)


@settings(max_examples=300, deadline=None)
@given(pods, st.sampled_from(["CREATE", "UPDATE"]), st.none() | st.sampled_from(["nvidia"]))
def test_any_pod_gets_a_valid_answer_and_the_patch_applies(
    obj: dict[str, object], operation: str, runtime_class: str | None
) -> None:
    hook, _ = webhook(mutation.Settings(runtime_class_name=runtime_class))
    body = review_body(obj, operation=operation, old=obj if operation == "UPDATE" else None)
    reply = hook.answer(body)
    assert reply.status == 200, reply.body
    response = response_of(reply.body)
    if not response["allowed"]:
        assert response["status"]["code"] in (400, 403) and response["status"]["message"]
        return
    after = apply_patch(obj, patch_of(response))
    again = response_of(hook.answer(review_body(after)).body)
    if operation == "CREATE":
        assert patch_of(again) == [], "a second pass finds nothing to fill"
