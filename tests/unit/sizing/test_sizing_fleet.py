"""Fleets from names, files and node registrations, and how many slices each card holds."""

from __future__ import annotations

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1, decode_registration
from kantaloupe.api.registration import encode_registration as encode
from kantaloupe.sizing import GpuModel, fit_fleet, fleet_from_registrations
from kantaloupe.sizing.fleet import decode_fleet, gpu_from_text


def device(index: int, model: str, memory_mib: int, *, healthy: bool = True) -> DeviceV1:
    return DeviceV1(f"GPU-{model}-{index}", index, model, memory_mib, 100, 10, healthy=healthy)


def test_registrations_give_each_model_once_with_its_split() -> None:
    nodes = [
        NodeDevicesV1((device(0, "NVIDIA L4", 23034), device(1, "NVIDIA L4", 23034))),
        NodeDevicesV1((device(0, "NVIDIA L4", 23034), device(1, "NVIDIA A100-SXM4-80GB", 81920))),
        NodeDevicesV1((device(0, "NVIDIA H200", 143771, healthy=False),)),
    ]
    docs = [decode_registration(encode(n)) for n in nodes]
    assert fleet_from_registrations(docs) == (
        GpuModel("NVIDIA L4", 23034, 10),
        GpuModel("NVIDIA A100-SXM4-80GB", 81920, 10),
    )


def test_fit_counts_slices_per_card() -> None:
    fits = fit_fleet(10_240, [GpuModel("L4", 23034), GpuModel("T4", 15360), GpuModel("x", 9000)])
    assert [f.per_card for f in fits] == [2, 1, 0]
    assert [f.fits for f in fits] == [True, True, False]


def test_custom_gpu_by_memory() -> None:
    assert gpu_from_text("MyGPU=20480") == GpuModel("MyGPU", 20480)


@pytest.mark.parametrize("text", ["MyGPU=", "=100", "MyGPU=-5", "GTX 9999"])
def test_bad_gpu_names(text: str) -> None:
    with pytest.raises(InvalidConfigError):
        gpu_from_text(text)


def test_fleet_file_needs_memory_for_unknown_models() -> None:
    with pytest.raises(InvalidConfigError, match=r"gpus\[0\]\.model"):
        decode_fleet(b"version: v1\ngpus: [{model: Mystery}]\n", where="fleet.yaml")
    with pytest.raises(InvalidConfigError, match="does not decode"):
        decode_fleet(b"version: v2\ngpus: []\n", where="fleet.yaml")
