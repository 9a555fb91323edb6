"""Identifier types shared by every layer."""

from typing import NewType

NodeName = NewType("NodeName", str)
PodUid = NewType("PodUid", str)
DeviceUuid = NewType("DeviceUuid", str)
SlotId = NewType("SlotId", str)

_SLOT_SEPARATOR = "::"


def make_slot_id(uuid: DeviceUuid, replica: int) -> SlotId:
    """The kubelet-visible id of one tenant slot on a GPU (``<uuid>::<replica>``)."""
    return SlotId(f"{uuid}{_SLOT_SEPARATOR}{replica}")


def split_slot_id(slot: SlotId | str) -> tuple[DeviceUuid, int]:
    """Inverse of :func:`make_slot_id`; also accepts HAMi's ``<uuid>-<replica>`` form."""
    text = str(slot)
    if _SLOT_SEPARATOR in text:
        uuid, _, replica = text.rpartition(_SLOT_SEPARATOR)
    else:
        uuid, _, replica = text.rpartition("-")
    if not uuid or not replica.isdigit():
        raise ValueError(f"device slot id {text!r} is not <uuid>::<replica>")
    return DeviceUuid(uuid), int(replica)
