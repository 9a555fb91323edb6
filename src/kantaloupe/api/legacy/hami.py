"""Readers for HAMi's node registration and ``hami.io/vgpu-devices-allocated`` encodings.

Node registration (``hami.io/node-nvidia-register``) is a JSON array of device objects
(``id, index, count, devmem, devcore, type, numa, mode, health``; zero fields omitted) or, in the
older form, colon-separated devices of 7 or 9 comma fields
(``uuid,count,devmem,devcore,type,numa,health[,index,mode]``).

Pod devices are ``;``-terminated container entries (init containers first), each holding
``:``-terminated devices ``UUID,Type,MemMiB,CorePercent``.
"""

from __future__ import annotations

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.allocation import AllocationV1, SliceV1
from kantaloupe.api.codec import decode_json
from kantaloupe.api.errors import MalformedAnnotationError
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1

_INT32_MAX = 2**31 - 1


class _HamiDevice(msgspec.Struct, frozen=True):
    id: str
    index: int = 0
    count: int = 0
    devmem: int = 0
    devcore: int = 0
    type: str = ""
    numa: int = 0
    mode: str = ""
    health: bool = False


_NODE_DECODER = msgspec.json.Decoder(list[_HamiDevice])


def decode_hami_registration(raw: str) -> NodeDevicesV1:
    """Either HAMi registration form, as our registration document."""
    text = raw.strip()
    if text.startswith("["):
        items = decode_json(keys.HAMI_NODE_REGISTER, text, _NODE_DECODER)
        devices = [
            _device(d.id, d.index, d.count, d.devmem, d.devcore, d.type, d.numa, d.health, raw)
            for d in items
        ]
    else:
        devices = [_legacy_device(entry, raw) for entry in text.split(":") if entry.strip()]
    return NodeDevicesV1(devices=tuple(devices), agent_version="hami")


def _legacy_device(entry: str, raw: str) -> DeviceV1:
    fields = entry.split(",")
    if len(fields) not in (7, 9):
        raise MalformedAnnotationError(
            keys.HAMI_NODE_REGISTER, raw, f"device entry has {len(fields)} fields, not 7 or 9"
        )
    uuid, count, devmem, devcore, model, numa, health = fields[:7]
    index = fields[7] if len(fields) == 9 else "0"
    return _device(
        uuid,
        _int(index, raw),
        _int(count, raw),
        _int(devmem, raw),
        _int(devcore, raw),
        model,
        _int(numa, raw),
        health.strip().lower() == "true",
        raw,
    )


def _device(
    uuid: str,
    index: int,
    count: int,
    devmem: int,
    devcore: int,
    model: str,
    numa: int,
    health: bool,
    raw: str,
) -> DeviceV1:
    if not uuid or count <= 0 or devmem <= 0 or devcore <= 0 or index < 0 or numa < 0:
        raise MalformedAnnotationError(
            keys.HAMI_NODE_REGISTER, raw, f"device {uuid!r} has a missing or non-positive field"
        )
    return DeviceV1(
        uuid=uuid,
        index=index,
        model=model or "NVIDIA",
        memory_mib=devmem,
        cores=devcore,
        split=count,
        numa=numa,
        healthy=health,
    )


def _int(text: str, raw: str) -> int:
    stripped = text.strip()
    if not stripped.lstrip("-").isdigit() or abs(int(stripped)) > _INT32_MAX:
        raise MalformedAnnotationError(keys.HAMI_NODE_REGISTER, raw, f"{text!r} is not an integer")
    return int(stripped)


def decode_hami_pod_devices(raw: str, node: str) -> AllocationV1:
    """``hami.io/vgpu-devices-allocated`` (with ``hami.io/vgpu-node``) as our allocation."""
    key = keys.HAMI_DEVICES_ALLOCATED
    if not node:
        raise MalformedAnnotationError(key, raw, f"has no {keys.HAMI_VGPU_NODE} beside it")
    text = raw.strip()
    if text and not text.endswith(";"):
        raise MalformedAnnotationError(key, raw, "container entries must end with ';'")
    containers: list[tuple[SliceV1, ...]] = []
    for entry in text.split(";")[:-1] if text else []:
        slices: list[SliceV1] = []
        for device in entry.split(":"):
            if not device.strip():
                continue
            fields = device.split(",")
            if len(fields) != 4:
                raise MalformedAnnotationError(key, raw, f"device {device!r} needs 4 fields")
            uuid, _vendor, mem, cores = fields
            memory, core = _int(mem, raw), _int(cores, raw)
            if not uuid or memory < 0 or core < 0:
                raise MalformedAnnotationError(key, raw, f"device {device!r} is invalid")
            slices.append(SliceV1(uuid=uuid, memory_mib=memory, cores=core))
        containers.append(tuple(slices))
    return AllocationV1(node=node, containers=tuple(containers))


def encode_hami_pod_devices(doc: AllocationV1, vendor: str = "NVIDIA") -> str:
    """The HAMi string for an allocation (tests and HAMi-compatible readers downstream)."""
    return "".join(
        "".join(f"{s.uuid},{vendor},{s.memory_mib},{s.cores}:" for s in container) + ";"
        for container in doc.containers
    )
