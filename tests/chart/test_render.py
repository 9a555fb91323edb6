"""`helm lint` and `helm template` of charts/kantaloupe with the defaults and several value sets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from chartkit import CHART, NAMESPACE, Render, container, find, kinds

from kantaloupe.testing import SchedulerConfig, render_scheduler_config

SCHEDULER = "kantaloupe-scheduler"


def test_helm_lint_passes_with_defaults_and_every_option(helm: Path) -> None:
    for sets in (
        [],
        [
            "certificates.mode=cert-manager",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboard.enabled=true",
            "runtimeClass.name=nvidia",
            "runtimeClass.create=true",
        ],
    ):
        args = [str(helm), "lint", "--strict", str(CHART), "--kube-version", "v1.36.3"]
        for s in sets:
            args += ["--set", s]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_defaults_render_every_component(render: Render) -> None:
    objs = render()
    assert {
        "Deployment",
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "MutatingWebhookConfiguration",
        "PodDisruptionBudget",
        "Job",
    } <= kinds(objs)
    # Monitoring objects need the Prometheus Operator: off by default, as is cert-manager.
    optional = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer", "RuntimeClass"}
    assert not optional & kinds(objs)
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"):
            expected = "kube-system" if obj["metadata"]["name"].endswith("-reader") else NAMESPACE
            assert obj["metadata"]["namespace"] == expected, obj["metadata"]["name"]


def test_scheduler_pod_runs_official_kube_scheduler_with_the_shared_template(
    render: Render,
) -> None:
    objs = render()
    deploy = find(objs, "Deployment", "-scheduler")
    kube = container(deploy, "kube-scheduler")
    assert kube["image"] == "registry.k8s.io/kube-scheduler:v1.36.3"
    ours = container(deploy, "scheduler")
    assert ours["args"][0] == "scheduler"
    assert "--port=8443" in ours["args"] and "--metrics-port=9395" in ours["args"]
    assert f"--lease-namespace={NAMESPACE}" in ours["args"]
    assert "--leader-elect" in ours["args"]
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    config_text = find(objs, "ConfigMap", "-scheduler")["data"]["kube-scheduler-config.yaml"]
    body = [line for line in config_text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in body if "@@" in line], "unfilled template tokens"
    expected = render_scheduler_config(
        SchedulerConfig(
            extender_url="https://127.0.0.1:8443",
            scheduler_name=SCHEDULER,
            leader_elect=True,
            leader_elect_name="kantaloupe-kube-scheduler",
            leader_elect_namespace=NAMESPACE,
            enable_https=True,
            tls_ca_file="/etc/kantaloupe/tls/ca.crt",
        )
    )
    assert yaml.safe_load(config_text) == yaml.safe_load(expected)


@pytest.mark.parametrize(
    ("kube_version", "tag"),
    [
        pytest.param("v1.31.4+k3s1", "v1.31.4", id="k3s"),
        pytest.param("v1.30.4+rke2r1", "v1.30.4", id="rke2"),
        pytest.param("v1.29.8-eks-a737599", "v1.29.8", id="eks"),
    ],
)
def test_kube_scheduler_tag_follows_the_cluster_without_build_suffix(
    render: Render, kube_version: str, tag: str
) -> None:
    deploy = find(render(kube_version=kube_version), "Deployment", "-scheduler")
    assert container(deploy, "kube-scheduler")["image"].endswith(f":{tag}")


def test_kube_scheduler_tag_can_be_pinned(render: Render) -> None:
    objs = render({"scheduler": {"kubeScheduler": {"image": {"tag": "v1.35.0"}}}})
    image = container(find(objs, "Deployment", "-scheduler"), "kube-scheduler")["image"]
    assert image == "registry.k8s.io/kube-scheduler:v1.35.0"


def test_webhook_configuration_states_its_policy_and_filters(render: Render) -> None:
    objs = render()
    (hook,) = find(objs, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["reinvocationPolicy"] == "Never"
    assert hook["timeoutSeconds"] == 5
    assert hook["sideEffects"] == "None"
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    assert "caBundle" not in hook["clientConfig"]  # the certgen Job patches it in
    assert {"key": "kantaloupe.io/webhook", "operator": "NotIn", "values": ["ignore"]} in hook[
        "namespaceSelector"
    ]["matchExpressions"]
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    sa = f"system:serviceaccount:{NAMESPACE}:kantaloupe-scheduler"
    assert sa in conditions["not-from-kantaloupe"]
    for name in ("nvidia.com/gpu", "nvidia.com/gpumem", "nvidia.com/gpucores"):
        assert f"'{name}'" in conditions["concerns-kantaloupe"]
    args = container(find(objs, "Deployment", "-webhook"), "webhook")["args"]
    assert f"--trusted-service-accounts={sa},{sa[:-9]}node-agent" in args
    assert "--excluded-namespaces=kube-system" in args
    assert "--scheduler-name=kantaloupe-scheduler" in args


def test_webhook_without_match_conditions_uses_selectors(render: Render) -> None:
    objs = render({"webhook": {"matchConditions": False, "failurePolicy": "Ignore"}})
    (hook,) = find(objs, "MutatingWebhookConfiguration")["webhooks"]
    assert "matchConditions" not in hook
    assert hook["failurePolicy"] == "Ignore"
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system"],
    } in hook["namespaceSelector"]["matchExpressions"]
    assert hook["objectSelector"]["matchExpressions"][0]["key"] == "kantaloupe.io/webhook"


def test_custom_resource_names_reach_kube_scheduler_and_webhook(render: Render) -> None:
    names = {
        "gpu": "example.com/vgpu",
        "memory": "example.com/vgpu-memory",
        "memoryPercentage": "example.com/vgpu-memory-percentage",
        "cores": "example.com/vgpu-cores",
        "priority": "example.com/vgpu-priority",
    }
    objs = render({"resourceNames": names})
    config = yaml.safe_load(
        find(objs, "ConfigMap", "-scheduler")["data"]["kube-scheduler-config.yaml"]
    )
    managed = config["extenders"][0]["managedResources"]
    assert managed == [{"name": n, "ignoredByScheduler": True} for n in names.values()]
    (hook,) = find(objs, "MutatingWebhookConfiguration")["webhooks"]
    text = hook["matchConditions"][1]["expression"]
    assert "'example.com/vgpu-cores'" in text and "nvidia.com" not in text


def test_node_agent_daemonset_defaults(render: Render) -> None:
    ds = find(render(), "DaemonSet", "-node-agent")
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"gpu": "on"}
    assert spec["hostPID"] is True
    agent = container(ds, "node-agent")
    assert agent["securityContext"]["privileged"] is True
    args = agent["args"]
    for arg in (
        "node-agent",
        "--node-name=$(NODE_NAME)",
        "--device-plugin-dir=/var/lib/kubelet/device-plugins",
        "--library-dir=/usr/local/kantaloupe",
        "--metrics-port=9394",
        "--config=/config/node-config.yaml",
        f"--lease-namespace={NAMESPACE}",
        "--publish-capacity",
    ):
        assert arg in args
    assert not [a for a in args if a.startswith("--wait-for-file")]
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {
        "/var/lib/kubelet/device-plugins",
        "/usr/local/kantaloupe",
        "/var/lib/kantaloupe",
    }
    config = yaml.safe_load(find(render(), "ConfigMap", "-node-agent")["data"]["node-config.yaml"])
    assert config["version"] == "v1" and config["split_count"] == 10


def test_node_selector_gpu_operator_and_runtime_class(render: Render) -> None:
    objs = render(
        {
            "nodeAgent": {
                "nodeSelector": {"accelerator": "nvidia", "gpu": None},
                "gpuOperator": {"waitForToolkit": True},
                "cdi": True,
            },
            "runtimeClass": {"name": "nvidia", "create": True},
        }
    )
    ds = find(objs, "DaemonSet", "-node-agent")
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"accelerator": "nvidia"}
    assert spec["runtimeClassName"] == "nvidia"
    args = container(ds, "node-agent")["args"]
    assert "--wait-for-file=/run/nvidia/validations/toolkit-ready" in args
    assert "--cdi" in args
    assert "/run/nvidia/validations" in {
        v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v
    }
    assert find(objs, "RuntimeClass", "nvidia")["handler"] == "nvidia"
    webhook_args = container(find(objs, "Deployment", "-webhook"), "webhook")["args"]
    assert "--runtime-class-name=nvidia" in webhook_args


@pytest.mark.parametrize(
    ("mode", "present", "absent", "keys"),
    [
        pytest.param("job", {"Job"}, {"Certificate", "Secret"}, ("cert", "key", "ca"), id="job"),
        pytest.param(
            "cert-manager",
            {"Certificate", "Issuer"},
            {"Job", "Secret"},
            ("tls.crt", "tls.key", "ca.crt"),
            id="cert-manager",
        ),
        pytest.param(
            "helm", {"Secret"}, {"Job", "Certificate"}, ("tls.crt", "tls.key", "ca.crt"), id="helm"
        ),
    ],
)
def test_certificate_modes(
    render: Render, mode: str, present: set[str], absent: set[str], keys: tuple[str, ...]
) -> None:
    objs = render({"certificates": {"mode": mode}})
    assert present <= kinds(objs)
    assert not absent & kinds(objs)
    for component in ("-scheduler", "-webhook"):
        volumes = find(objs, "Deployment", component)["spec"]["template"]["spec"]["volumes"]
        (tls,) = [v for v in volumes if v["name"] == "tls"]
        assert tls["secret"]["secretName"] == "kantaloupe-tls"
        assert tuple(i["key"] for i in tls["secret"]["items"]) == keys
    webhook = find(objs, "MutatingWebhookConfiguration")
    if mode == "cert-manager":
        assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/kantaloupe-tls"
        )
        cert = find(objs, "Certificate", "-tls")
        assert "127.0.0.1" in cert["spec"]["ipAddresses"]
        assert f"kantaloupe-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    if mode == "helm":
        ca = find(objs, "Secret", "-tls")["data"]["ca.crt"]
        assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == ca
    if mode == "job":
        create = find(objs, "Job", "-create")
        assert create["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        host = next(a for a in container(create, "create")["args"] if a.startswith("--host="))
        assert "127.0.0.1" in host and f"kantaloupe-webhook.{NAMESPACE}.svc" in host


def test_cert_manager_with_an_existing_issuer(render: Render) -> None:
    objs = render(
        {
            "certificates": {
                "mode": "cert-manager",
                "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
            }
        }
    )
    assert "Issuer" not in kinds(objs)
    ref = find(objs, "Certificate", "-tls")["spec"]["issuerRef"]
    assert ref == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_monitoring_on_renders_monitors_rules_and_dashboard(render: Render) -> None:
    objs = render(
        {
            "monitoring": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            }
        }
    )
    monitors = [o for o in objs if o["kind"] == "ServiceMonitor"]
    jobs = {m["spec"]["endpoints"][0]["relabelings"][0]["replacement"] for m in monitors}
    assert jobs == {"kantaloupe-scheduler", "kantaloupe-webhook", "kantaloupe-node-agent"}
    assert all(m["metadata"]["labels"]["release"] == "prom" for m in monitors)
    # Every monitor selects exactly one Service, by the Service's own labels.
    services = [o for o in objs if o["kind"] == "Service"]
    for m in monitors:
        selector = m["spec"]["selector"]["matchLabels"]
        hits = [s for s in services if selector.items() <= s["spec"]["selector"].items()]
        assert len(hits) == 1, m["metadata"]["name"]
        assert m["spec"]["endpoints"][0]["port"] in {p["name"] for p in hits[0]["spec"]["ports"]}
    assert find(objs, "PrometheusRule")["spec"]["groups"]
    dashboard = find(objs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_scheduler_extender_port_is_not_in_a_service(render: Render) -> None:
    service = find(render(), "Service", "-scheduler")
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
