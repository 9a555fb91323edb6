"""Size a GPU slice from a model's architecture and the tokens it must hold.

Pure: the catalogues are package data; only :mod:`kantaloupe.sizing.command` does I/O.
The webhook calls :func:`decide_from_annotation` and stores
``kantaloupe.api.sizing.encode_sizing(decision.record)`` under ``kantaloupe.io/sizing``.
"""

from kantaloupe.sizing.annotation import (
    LlmRequest,
    SizingDecision,
    decide_from_annotation,
    parse_llm_annotation,
)
from kantaloupe.sizing.architecture import Architecture, Precision
from kantaloupe.sizing.catalogue import GpuModel, find_model, gpu_models
from kantaloupe.sizing.estimate import Estimate, Workload, estimate
from kantaloupe.sizing.fleet import FleetFit, fit_fleet, fleet_from_registrations

__all__ = [
    "Architecture",
    "Estimate",
    "FleetFit",
    "GpuModel",
    "LlmRequest",
    "Precision",
    "SizingDecision",
    "Workload",
    "decide_from_annotation",
    "estimate",
    "find_model",
    "fit_fleet",
    "fleet_from_registrations",
    "gpu_models",
    "parse_llm_annotation",
]
