"""Node registration: the node agent's description of its GPUs (``kantaloupe.io/node-devices``).

Writers write the newest version; readers accept the newest and the previous one.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.codec import decode_json
from kantaloupe.api.errors import MalformedAnnotationError

NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class DeviceV1(msgspec.Struct, frozen=True):
    """One physical GPU as the scheduler should see it (scaling already applied)."""

    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    index: NonNegative
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    memory_mib: Positive
    """Schedulable memory: physical MiB × the node's memory scaling."""
    cores: Positive
    """Schedulable compute in percent: 100 × the node's core scaling."""
    split: Positive
    """How many containers may share this GPU at once."""
    numa: NonNegative = 0
    healthy: bool = True


class NodeDevicesV1(msgspec.Struct, frozen=True, tag_field="v", tag=1):
    """Version 1 of the registration document."""

    devices: tuple[DeviceV1, ...]
    agent_version: str = ""


NodeDevices = NodeDevicesV1
_DECODER = msgspec.json.Decoder(NodeDevicesV1)
_ENCODER = msgspec.json.Encoder()


def encode_registration(doc: NodeDevices) -> str:
    return _ENCODER.encode(doc).decode()


def decode_registration(raw: str | bytes) -> NodeDevices:
    """Decode and validate; a duplicate UUID or index is malformed too."""
    doc = decode_json(keys.NODE_DEVICES, raw, _DECODER)
    uuids = [d.uuid for d in doc.devices]
    if len(set(uuids)) != len(uuids):
        raise MalformedAnnotationError(keys.NODE_DEVICES, raw, "lists a device UUID twice")
    indexes = [d.index for d in doc.devices]
    if len(set(indexes)) != len(indexes):
        raise MalformedAnnotationError(keys.NODE_DEVICES, raw, "lists a device index twice")
    return doc
