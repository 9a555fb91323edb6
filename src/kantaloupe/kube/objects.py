"""Slim typed views of the Kubernetes objects Kantaloupe reads.

Decoding a raw JSON body into these ``msgspec.Struct`` types keeps only the fields named here
(``managedFields``, status conditions, volumes ... are skipped while parsing), which is what
lets 50,000 pods fit in a few hundred MB. Field names are Kubernetes' camelCase.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec


class ObjectMeta(msgspec.Struct, rename="camel", frozen=True, gc=False):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


class ListMeta(msgspec.Struct, rename="camel", frozen=True, gc=False):
    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class Resources(msgspec.Struct, frozen=True, gc=False):
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None


class Container(msgspec.Struct, frozen=True, gc=False):
    name: str = ""
    resources: Resources = Resources()


class PodSpec(msgspec.Struct, rename="camel", frozen=True, gc=False):
    node_name: str = ""
    scheduler_name: str = ""
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()


class PodStatus(msgspec.Struct, frozen=True, gc=False):
    phase: str = ""


class Pod(msgspec.Struct, frozen=True, gc=False):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()


class NodeSpec(msgspec.Struct, frozen=True, gc=False):
    unschedulable: bool = False


class Node(msgspec.Struct, frozen=True, gc=False):
    metadata: ObjectMeta = ObjectMeta()
    spec: NodeSpec = NodeSpec()


class LeaseSpec(msgspec.Struct, rename="camel", frozen=True, gc=False):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None


class Lease(msgspec.Struct, frozen=True, gc=False):
    metadata: ObjectMeta = ObjectMeta()
    spec: LeaseSpec = LeaseSpec()


class Namespace(msgspec.Struct, frozen=True, gc=False):
    metadata: ObjectMeta = ObjectMeta()


T = TypeVar("T")


class ObjectList(msgspec.Struct, Generic[T], frozen=True, gc=False):
    metadata: ListMeta = ListMeta()
    items: list[T] = msgspec.field(default_factory=list)


def annotations_of(meta: ObjectMeta) -> dict[str, str]:
    return meta.annotations if meta.annotations is not None else {}


def key_of(meta: ObjectMeta) -> str:
    """``namespace/name`` (``name`` for cluster-scoped objects), as client-go keys its caches."""
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
