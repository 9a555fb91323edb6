"""Lease-based leader election (``coordination.k8s.io/v1``), client-go's algorithm.

The leader renews its Lease every ``retry_period_s``; it steps down when it could not renew for
``renew_deadline_s``. A candidate takes the Lease when the holder is empty or when the record
has not changed for ``lease_duration_s`` by the candidate's own clock (no clock skew matters).
Every write carries the Lease's resourceVersion, so two candidates never both win. On
:meth:`LeaderElector.release` the leader empties the holder so a successor need not wait.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kantaloupe.kube import errors
from kantaloupe.kube.client import KubeClient, lease_path, leases_path
from kantaloupe.kube.objects import Lease

log = logging.getLogger(__name__)


def micro_time(at: datetime.datetime | None = None) -> str:
    """Kubernetes MicroTime text (``2026-11-29T13:15:24.123456Z``)."""
    at = at or datetime.datetime.now(datetime.UTC)
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    """Unix seconds of a Time or MicroTime, or None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def lease_expires_at(lease: Lease) -> float | None:
    """Unix seconds when a heartbeat Lease goes stale (renewTime + leaseDurationSeconds)."""
    renewed = parse_time(lease.spec.renew_time) or parse_time(lease.spec.acquire_time)
    if renewed is None or not lease.spec.lease_duration_seconds:
        return None
    return renewed + lease.spec.lease_duration_seconds


async def read_lease(client: KubeClient, namespace: str, name: str) -> Lease | None:
    return await client.get_or_none(lease_path(namespace, name), Lease)


@dataclass(frozen=True, slots=True)
class ElectionSettings:
    namespace: str
    name: str
    identity: str
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


class LeaderElector:
    """Runs the election loop; :attr:`is_leader` is the answer at any moment."""

    def __init__(
        self,
        client: KubeClient,
        settings: ElectionSettings,
        *,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.on_change = on_change
        self.is_leader = False
        self._observed_rv = ""
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info(
                "leadership changed",
                extra={
                    "leader": leader,
                    "lease": self.settings.name,
                    "identity": self.settings.identity,
                },
            )
            if self.on_change is not None:
                self.on_change(leader)

    def _body(self, lease: Lease | None, now: str) -> dict[str, object]:
        s = self.settings
        transitions = 0
        acquire = now
        if lease is not None:
            transitions = lease.spec.lease_transitions or 0
            if lease.spec.holder_identity == s.identity:
                acquire = lease.spec.acquire_time or now
            else:
                transitions += 1
        meta: dict[str, object] = {"name": s.name, "namespace": s.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease.metadata.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": s.identity,
                "leaseDurationSeconds": max(1, round(s.lease_duration_s)),
                "acquireTime": acquire,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round; True when this candidate holds the Lease afterwards."""
        s = self.settings
        loop = asyncio.get_running_loop()
        now = micro_time()
        lease = await read_lease(self.client, s.namespace, s.name)
        if lease is None:
            try:
                await self.client.create(leases_path(s.namespace), self._body(None, now), Lease)
            except errors.AlreadyExistsError:
                return False
            self._renewed_at = loop.time()
            return True
        if lease.metadata.resource_version != self._observed_rv:
            self._observed_rv = lease.metadata.resource_version
            self._observed_at = loop.time()
        holder = lease.spec.holder_identity or ""
        duration = lease.spec.lease_duration_seconds or s.lease_duration_s
        if holder and holder != s.identity and loop.time() - self._observed_at < duration:
            return False
        try:
            updated = await self.client.replace(
                lease_path(s.namespace, s.name), self._body(lease, now), Lease
            )
        except errors.ConflictError:
            return False
        self._observed_rv = updated.metadata.resource_version
        self._observed_at = self._renewed_at = loop.time()
        return True

    async def run(self) -> None:
        """Campaign and renew until cancelled; then release if leading."""
        s = self.settings
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    held = await asyncio.wait_for(self.try_acquire_or_renew(), s.renew_deadline_s)
                except (errors.KubeError, TimeoutError) as e:
                    log.warning("lease round failed", extra={"lease": s.name, "error": str(e)})
                    held = False
                if held:
                    self._set(True)
                elif loop.time() - self._renewed_at >= s.renew_deadline_s:
                    self._set(False)
                await asyncio.sleep(s.retry_period_s)
        finally:
            if self.is_leader:
                self._set(False)
                await asyncio.shield(self.release())

    async def release(self) -> None:
        """Empty the holder so a successor takes over at once (best effort)."""
        s = self.settings
        try:
            lease = await read_lease(self.client, s.namespace, s.name)
            if lease is None or lease.spec.holder_identity != s.identity:
                return
            body = self._body(lease, micro_time())
            spec = body["spec"]
            assert isinstance(spec, dict)
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            spec["leaseTransitions"] = lease.spec.lease_transitions or 0
            await self.client.replace(lease_path(s.namespace, s.name), body, Lease)
        except errors.KubeError as e:
            log.warning("lease not released", extra={"lease": s.name, "error": str(e)})
