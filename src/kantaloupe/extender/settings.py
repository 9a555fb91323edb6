"""The extender's settings, built once from flags, env and file (:mod:`.command`)."""

from __future__ import annotations

from dataclasses import dataclass

from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy


@dataclass(frozen=True, slots=True)
class Settings:
    address: str = "0.0.0.0"
    """Listen address of the extender (filter, bind, probes, metrics)."""
    port: int = 8888
    metrics_port: int = 0
    """A second listener for ``/metrics`` and probes only; 0 serves them on ``port`` alone."""
    tls_cert_file: str = ""
    """PEM certificate; with ``tls_key_file`` the extender serves HTTPS."""
    tls_key_file: str = ""
    kubeconfig: str = ""
    """Empty: in-cluster config, else ``$KUBECONFIG``/``~/.kube/config``."""
    kube_timeout_s: float = 10.0
    """Bound on each ordinary API request."""
    node_policy: NodePolicy = NodePolicy.BINPACK
    gpu_policy: GpuPolicy = GpuPolicy.SPREAD
    node_label_selector: str = ""
    """Only nodes matching this label selector are watched (e.g. ``gpu=on``)."""
    agent_namespace: str = "kantaloupe-system"
    """Namespace of the node agents' heartbeat Leases ``kantaloupe-node-<node>``."""
    agent_lease_grace_s: float = 5.0
    """Extra seconds past a heartbeat's expiry before its node gets no new pods."""
    reservation_ttl_s: float = 30.0
    """A reservation made by filter whose pod never binds is released after this long."""
    bind_timeout_s: float = 25.0
    """Longest a bind waits for an overlapping hand-off on its node; keep under httpTimeout."""
    handoff_timeout_s: float = 60.0
    """A hand-off the node agent never finishes stops blocking its GPUs after this long."""
    leader_elect: bool = True
    lease_name: str = "kantaloupe-extender"
    lease_namespace: str = ""
    """Empty: ``agent_namespace``."""
    identity: str = ""
    """Empty: the host name (a restarted pod keeps it, so it takes its Lease back at once)."""
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    shutdown_grace_s: float = 20.0
    """SIGTERM to exit, drain included; keep under terminationGracePeriodSeconds."""
    log_level: str = "info"

    @property
    def election_namespace(self) -> str:
        return self.lease_namespace or self.agent_namespace
