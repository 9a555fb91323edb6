"""The sizing record the webhook leaves on a pod (``kantaloupe.io/sizing``).

When a pod asks for a slice by model (``kantaloupe.io/llm``) and sets no ``nvidia.com/gpumem``,
the webhook fills it and records how it got the number, so people and tools can see it.
Writers write the newest version; readers accept the newest and the previous one.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.codec import decode_json

Mib = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Count = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SizingV1(msgspec.Struct, frozen=True, tag_field="v", tag=1):
    """Version 1: the inputs, the per-GPU breakdown in MiB and the ``gpumem`` it set."""

    model: Name
    """The catalogue name the request resolved to."""
    dtype: Name
    kv_dtype: Name
    max_tokens: Count
    concurrency: Count
    gpumem_mib: Mib
    """What was set as ``nvidia.com/gpumem`` (per GPU)."""
    weights_mib: Mib
    kv_cache_mib: Mib
    activations_mib: Mib
    engine_reserve_mib: Mib
    cuda_context_mib: Mib
    total_mib: Mib
    tensor_parallel: Count = 1
    gpu_utilization: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    fits: tuple[Name, ...] = ()
    """GPU models of the cluster that hold the slice; empty when the cluster was unknown."""


Sizing = SizingV1
_DECODER = msgspec.json.Decoder(SizingV1)
_ENCODER = msgspec.json.Encoder()


def encode_sizing(doc: Sizing) -> str:
    return _ENCODER.encode(doc).decode()


def decode_sizing(raw: str | bytes) -> Sizing:
    return decode_json(keys.SIZING, raw, _DECODER)
