"""The cluster's GPU models, for ``kantaloupe.io/llm`` sizing: a small cache over node watches.

Each node's ``kantaloupe.io/node-devices`` registration is decoded once per change; a malformed
one costs only that node (logged, left out of the fleet). :meth:`FleetCache.on_change` is an
``Informer`` handler (synchronous, no ``await``), and :meth:`FleetCache.models` is what the
webhook passes to the pure decision.
"""

from __future__ import annotations

import logging

from kantaloupe.api import keys, registration
from kantaloupe.api.errors import MalformedAnnotationError
from kantaloupe.kube import objects
from kantaloupe.sizing import GpuModel, fleet_from_registrations

log = logging.getLogger(__name__)


class FleetCache:
    """Node name → its registration; the fleet is recomputed only after a change."""

    __slots__ = ("_fleet", "_nodes")

    def __init__(self) -> None:
        self._nodes: dict[str, registration.NodeDevices] = {}
        self._fleet: tuple[GpuModel, ...] | None = None

    def on_change(self, old: objects.Node | None, new: objects.Node | None) -> None:
        if new is None:
            if old is not None and self._nodes.pop(old.metadata.name, None) is not None:
                self._fleet = None
            return
        name = new.metadata.name
        raw = objects.annotations_of(new.metadata).get(keys.NODE_DEVICES)
        doc: registration.NodeDevices | None = None
        if raw is not None:
            try:
                doc = registration.decode_registration(raw)
            except MalformedAnnotationError as e:
                log.warning(
                    "node registration does not decode; node left out of the sizing fleet",
                    extra={"node": name, "error": str(e)},
                )
        previous = self._nodes.get(name)
        if doc is None:
            if self._nodes.pop(name, None) is not None:
                self._fleet = None
        elif doc != previous:
            self._nodes[name] = doc
            self._fleet = None

    def models(self) -> tuple[GpuModel, ...]:
        """Distinct healthy GPU models of every registered node (empty: unknown)."""
        if self._fleet is None:
            self._fleet = fleet_from_registrations(self._nodes.values())
        return self._fleet

    def __len__(self) -> int:
        return len(self._nodes)
