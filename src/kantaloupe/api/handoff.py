"""Hand-off state between the extender's bind and the agent's Allocate (``kantaloupe.io/handoff``).

Protocol (see docs/handoff.md):

1. The extender's bind writes ``AllocationV1`` and ``HandoffV1(phase=BINDING)`` on the pod, then
   creates the Binding. Binds to one node whose GPUs overlap a hand-off still in flight wait in a
   per-node queue (bounded by the extender timeout) instead of failing.
2. Kubelet calls the agent's Allocate with device slot ids but no pod identity. The agent picks the
   pod on its node in phase BINDING whose next unserved GPU container uses exactly those GPU UUIDs
   (in-flight hand-offs on one node never overlap, so the match is unique; oldest ``since`` wins
   otherwise), answers, and records the container in ``served``.
3. When every GPU container is served the agent writes ``phase=DONE``; on an error ``FAILED`` with
   a message. The extender releases its queue entry on DONE/FAILED, when the pod is gone, or after
   the hand-off timeout.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.codec import decode_json


class HandoffPhase(enum.StrEnum):
    BINDING = "binding"
    DONE = "done"
    FAILED = "failed"


class HandoffV1(msgspec.Struct, frozen=True, tag_field="v", tag=1):
    phase: HandoffPhase
    node: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    since: Annotated[float, msgspec.Meta(ge=0)]
    """Unix seconds when the bind started."""
    served: tuple[int, ...] = ()
    """Indexes (into the allocation's containers) already handed to kubelet."""
    message: Annotated[str, msgspec.Meta(max_length=1024)] = ""


Handoff = HandoffV1
_DECODER = msgspec.json.Decoder(HandoffV1)
_ENCODER = msgspec.json.Encoder()


def encode_handoff(doc: Handoff) -> str:
    return _ENCODER.encode(doc).decode()


def decode_handoff(raw: str | bytes) -> Handoff:
    return decode_json(keys.HANDOFF, raw, _DECODER)
