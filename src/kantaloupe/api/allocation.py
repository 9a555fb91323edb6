"""Pod allocation: which slice of which GPU each container got (``kantaloupe.io/allocation``).

Containers are listed init containers first, then app containers (HAMi's order); a container
without GPUs has an empty tuple. The document is written once at bind and never erased: it
is the source of truth when the scheduler rebuilds its ledger.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.codec import decode_json
from kantaloupe.api.errors import MalformedAnnotationError

NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class SliceV1(msgspec.Struct, frozen=True):
    """A container's share of one GPU."""

    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    memory_mib: NonNegative
    cores: NonNegative


class AllocationV1(msgspec.Struct, frozen=True, tag_field="v", tag=1):
    """Version 1 of the allocation document."""

    node: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    containers: tuple[tuple[SliceV1, ...], ...]
    names: tuple[str, ...] = ()
    """Container names in the same order (init first), for the node agent and for people."""
    init_count: NonNegative = 0
    """How many of ``containers`` are init containers."""


Allocation = AllocationV1
_DECODER = msgspec.json.Decoder(AllocationV1)
_ENCODER = msgspec.json.Encoder()


def encode_allocation(doc: Allocation) -> str:
    return _ENCODER.encode(doc).decode()


def decode_allocation(raw: str | bytes) -> Allocation:
    doc = decode_json(keys.ALLOCATION, raw, _DECODER)
    if doc.names and len(doc.names) != len(doc.containers):
        raise MalformedAnnotationError(
            keys.ALLOCATION, raw, "names and containers differ in length"
        )
    if doc.init_count > len(doc.containers):
        raise MalformedAnnotationError(keys.ALLOCATION, raw, "init_count exceeds the containers")
    return doc
