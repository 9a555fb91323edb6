"""Which GPU models of a fleet can host a slice, and how many slices fit on one card.

A fleet comes from ``--gpu`` names, a fleet file, the bundled GPU catalogue or the nodes'
registrations; it is a tuple of :class:`~kantaloupe.sizing.catalogue.GpuModel` either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from kantaloupe.api.errors import InvalidConfigError, InvalidRequestError, shorten
from kantaloupe.api.registration import NodeDevices
from kantaloupe.sizing.catalogue import GpuModel, find_gpu, gpu_suggestions

MemoryMib = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class FleetGpuV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One GPU model in a fleet file; ``memory_mib`` may be left out for catalogue models."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    memory_mib: MemoryMib | None = None
    count: Annotated[int, msgspec.Meta(ge=0)] = 1


class FleetFileV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``--fleet FILE.yaml``: ``version: v1`` and ``gpus: [{model: RTX 4090}, ...]``."""

    gpus: tuple[FleetGpuV1, ...]
    version: Literal["v1"] = "v1"


@dataclass(frozen=True, slots=True)
class FleetFit:
    """How many slices of the recommended size one card of ``gpu`` holds (0: none)."""

    gpu: GpuModel
    per_card: int

    @property
    def fits(self) -> bool:
        return self.per_card > 0


def gpu_from_text(text: str, *, where: str = "--gpu") -> GpuModel:
    """``"RTX 4090"``, ``"NVIDIA A100-SXM4-80GB"``, or ``"Name=MiB"`` for a card not catalogued."""
    name, sep, mib = text.partition("=")
    if sep:
        try:
            memory = int(mib.strip())
        except ValueError:
            memory = 0
        if memory <= 0 or not name.strip():
            raise InvalidConfigError(
                where, text, "must be NAME=MiB with a positive MiB", 'e.g. --gpu "MyGPU=20480"'
            )
        return GpuModel(name.strip(), memory)
    gpu = find_gpu(name)
    if gpu is None:
        close = gpu_suggestions(name)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InvalidConfigError(
            where,
            text,
            "is not a catalogued GPU model (or names several)",
            f'{hint}give NAME=MiB for other cards, e.g. "{name.strip() or "GPU"}=24576"',
        )
    return gpu


def decode_fleet(raw: bytes, *, where: str) -> tuple[GpuModel, ...]:
    """A fleet file's GPU models; each without ``memory_mib`` must be catalogued."""
    try:
        doc = msgspec.yaml.decode(raw, type=FleetFileV1)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidConfigError(
            where,
            shorten(raw.decode(errors="replace"), 60),
            f"does not decode ({e})",
            "write `version: v1` and `gpus:` as a list of {model, memory_mib?, count?}",
        ) from e
    fleet: list[GpuModel] = []
    for i, entry in enumerate(doc.gpus):
        if entry.memory_mib is not None:
            fleet.append(GpuModel(entry.model, entry.memory_mib))
        else:
            fleet.append(gpu_from_text(entry.model, where=f"{where}: gpus[{i}].model"))
    return dedupe(fleet)


def fleet_from_registrations(docs: Iterable[NodeDevices]) -> tuple[GpuModel, ...]:
    """The GPU models the nodes registered: healthy devices, by model and schedulable memory."""
    fleet = [
        GpuModel(d.model, d.memory_mib, d.split) for doc in docs for d in doc.devices if d.healthy
    ]
    return dedupe(fleet)


def dedupe(fleet: Iterable[GpuModel]) -> tuple[GpuModel, ...]:
    """Each GPU model once, first occurrence kept, order kept."""
    return tuple(dict.fromkeys(fleet))


def fit_fleet(gpumem_mib: int, fleet: Sequence[GpuModel]) -> tuple[FleetFit, ...]:
    """Slices of ``gpumem_mib`` per card for each GPU model, in the fleet's order."""
    if gpumem_mib <= 0:
        raise InvalidRequestError("gpumem", gpumem_mib, "must be positive", "size first")
    fits = []
    for gpu in dedupe(fleet):
        per_card = gpu.memory_mib // gpumem_mib
        if gpu.split > 0:
            per_card = min(per_card, gpu.split)
        fits.append(FleetFit(gpu, per_card))
    return tuple(fits)
