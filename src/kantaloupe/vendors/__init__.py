"""Device vendors behind one small protocol: resource names and what a container is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from kantaloupe.api.allocation import SliceV1


class Vendor(Protocol):
    """What the webhook, scheduler and node agent need to know about one vendor's devices."""

    name: str
    resources: tuple[str, ...]
    """Extended resources this vendor's pods ask for (the extender's managed resources)."""

    def requests_device(self, resources: Mapping[str, object]) -> bool:
        """Whether a container's limits/requests ask for this vendor's devices."""
        ...

    def container_env(
        self, slices: Sequence[SliceV1], *, priority: int | None, shared_cache: str
    ) -> dict[str, str]:
        """Environment that tells the in-container isolation library its limits."""
        ...
