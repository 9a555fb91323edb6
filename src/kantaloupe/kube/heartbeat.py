"""The node agent's heartbeat: a Lease ``kantaloupe-node-<node>`` renewed while the agent runs.

The scheduler extender stops placing pods on a node whose lease has expired (``renewTime`` older
than ``leaseDurationSeconds``), so a dead agent costs new pods at most one lease duration.
"""

from __future__ import annotations

import datetime

from kantaloupe.api import keys
from kantaloupe.kube import errors
from kantaloupe.kube.client import KubeClient, lease_path, leases_path
from kantaloupe.kube.objects import Lease


def lease_name(node: str) -> str:
    return f"{keys.AGENT_LEASE_PREFIX}{node}"


def _micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeat:
    """Creates and renews the agent's Lease (never deleted: an agent restart keeps it)."""

    def __init__(
        self, client: KubeClient, *, namespace: str, node: str, duration_s: int = 40
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.node = node
        self.name = lease_name(node)
        self.duration_s = duration_s

    async def renew(self, now: datetime.datetime | None = None) -> None:
        """Set ``renewTime`` to now, creating the Lease when it is missing."""
        stamp = _micro_time(now or datetime.datetime.now(datetime.UTC))
        spec = {
            "holderIdentity": self.node,
            "leaseDurationSeconds": self.duration_s,
            "renewTime": stamp,
        }
        try:
            await self._client.patch(
                lease_path(self.namespace, self.name), {"spec": spec}, Lease, strategy="merge"
            )
        except errors.NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": stamp},
            }
            try:
                await self._client.create(leases_path(self.namespace), body, Lease)
            except errors.AlreadyExistsError:
                await self._client.patch(
                    lease_path(self.namespace, self.name), {"spec": spec}, Lease, strategy="merge"
                )
