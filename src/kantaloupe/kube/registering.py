"""The node agent's writes to its Node and to the pods it hands devices to.

Thin calls over :class:`~kantaloupe.kube.client.KubeClient`: the node's annotations, its
extended-resource capacity (through the ``status`` subresource) and the pods bound to it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kantaloupe.kube.client import KubeClient, node_path, pod_path, pods_path
from kantaloupe.kube.objects import Node, Pod, annotations_of


class NodeWriter:
    """Reads and patches one Node."""

    def __init__(self, client: KubeClient, node: str) -> None:
        self._client = client
        self.node = node

    async def annotation(self, key: str) -> str | None:
        """The node's annotation ``key`` (None when unset)."""
        node = await self._client.get(node_path(self.node), Node)
        return annotations_of(node.metadata).get(key)

    async def set_annotations(self, annotations: Mapping[str, str | None]) -> None:
        await self._client.patch_annotations(node_path(self.node), annotations, Node)

    async def set_capacity(self, quantities: Mapping[str, str | None]) -> None:
        """Set extended resources in ``status.capacity`` and ``status.allocatable`` (None removes).

        Kubelet keeps extended resources it does not manage, so they stay published.
        """
        body = {"status": {"capacity": dict(quantities), "allocatable": dict(quantities)}}
        await self._client.request(
            "PATCH",
            node_path(self.node) + "/status",
            body=body,
            content_type="application/merge-patch+json",
            what=f"node {self.node} capacity",
        )


class NodePods:
    """The pods bound to one node, and annotation writes on them."""

    def __init__(self, client: KubeClient, node: str) -> None:
        self._client = client
        self.node = node

    async def list(self) -> list[Pod]:
        listing = await self._client.list(
            pods_path(), Pod, field_selector=f"spec.nodeName={self.node}"
        )
        return listing.items

    async def get(self, namespace: str, name: str) -> Pod | None:
        return await self._client.get_or_none(pod_path(namespace, name), Pod)

    async def set_annotations(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        resource_version: str,
    ) -> None:
        """Patch ``annotations``; ConflictError if the pod changed since ``resource_version``."""
        await self._client.patch_annotations(
            pod_path(namespace, name), annotations, Pod, resource_version=resource_version
        )
