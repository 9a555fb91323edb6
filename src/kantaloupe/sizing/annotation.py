"""The ``kantaloupe.io/llm`` pod annotation: parse it, size the slice, decide what to set.

``model=qwen2.5-7b-instruct,dtype=bf16,max-tokens=8192,concurrency=4`` → a ``gpumem`` in MiB
and the :class:`~kantaloupe.api.sizing.Sizing` record to store under ``kantaloupe.io/sizing``.
Pure: the webhook passes the cluster's GPU models in (empty when it does not know them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kantaloupe.api import keys
from kantaloupe.api.errors import InvalidRequestError
from kantaloupe.api.sizing import Sizing
from kantaloupe.sizing.architecture import Precision, parse_precision
from kantaloupe.sizing.catalogue import GpuModel, find_model
from kantaloupe.sizing.estimate import Estimate, Workload, estimate
from kantaloupe.sizing.fleet import FleetFit, fit_fleet

MAX_TEXT = 1024
EXAMPLE = "model=qwen2.5-7b-instruct,dtype=bf16,max-tokens=8192,concurrency=4"


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """What the annotation asks for: a catalogue model name and a workload."""

    model: str
    workload: Workload


@dataclass(frozen=True, slots=True)
class SizingDecision:
    """What the webhook applies: ``gpumem_mib`` on each of ``gpus`` GPUs, and the record."""

    gpumem_mib: int
    gpus: int
    """GPUs per container (``tensor-parallel``); the webhook sets ``nvidia.com/gpu`` if unset."""
    estimate: Estimate
    fits: tuple[FleetFit, ...]
    record: Sizing


def _tokens(text: str) -> int:
    """``8192``, or ``8k`` / ``32K`` meaning 8192 / 32768 (context lengths are powers of two)."""
    match = re.fullmatch(r"([0-9]{1,9})([kK]?)", text)
    if match is None:
        raise ValueError(text)
    return int(match[1]) * (1024 if match[2] else 1)


def _mib(text: str) -> int:
    """MiB: ``2048``, ``2048Mi`` or ``2Gi``."""
    match = re.fullmatch(r"([0-9]{1,9})(Mi|Gi)?", text)
    if match is None:
        raise ValueError(text)
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def _count(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ValueError(text)
    return int(text)


def _fraction(text: str) -> float:
    if not re.fullmatch(r"(0?\.[0-9]{1,6}|1(\.0{1,6})?|0)", text):
        raise ValueError(text)
    return float(text)


def _precision(text: str) -> Precision:
    precision = parse_precision(text)
    if precision is None:
        raise ValueError(text)
    return precision


_FIELDS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "dtype": ("precision", _precision, ", ".join(p.value for p in Precision)),
    "kv-dtype": ("kv_precision", _precision, "fp16, bf16, fp8 or fp32"),
    "max-tokens": ("max_tokens", _tokens, "a whole number of tokens, e.g. 8192 or 8k"),
    "concurrency": ("concurrency", _count, "a whole number of sequences, e.g. 4"),
    "tensor-parallel": ("tensor_parallel", _count, "a whole number of GPUs, e.g. 2"),
    "prefill-chunk": ("prefill_chunk_tokens", _tokens, "a whole number of tokens, e.g. 8192"),
    "engine-reserve": ("engine_reserve_mib", _mib, "MiB, e.g. 1024 or 1Gi"),
    "cuda-context": ("cuda_context_mib", _mib, "MiB, e.g. 512"),
    "gpu-utilization": ("gpu_utilization", _fraction, "a share from 0.05 to 1, e.g. 0.9"),
}
KNOWN_KEYS = ("model", *_FIELDS)


def parse_llm_annotation(text: str) -> LlmRequest:
    """Parse ``key=value`` pairs separated by commas; ``model`` is required."""
    where = keys.LLM
    if len(text) > MAX_TEXT:
        raise InvalidRequestError(
            where, text, f"is longer than {MAX_TEXT} characters", f"write it as {EXAMPLE}"
        )
    seen: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise InvalidRequestError(where, text, f"{part.strip()!r} is not key=value", EXAMPLE)
        if key not in KNOWN_KEYS:
            raise InvalidRequestError(
                f"{where}: {key}", value, "is not a known key", f"use {', '.join(KNOWN_KEYS)}"
            )
        if key in seen:
            raise InvalidRequestError(f"{where}: {key}", value, "is given twice", "keep one")
        seen[key] = value
    if "model" not in seen:
        raise InvalidRequestError(where, text, "names no model", f"write it as {EXAMPLE}")
    model = seen.pop("model")
    workload = workload_from_settings(seen, where=f"{where}: ")
    return LlmRequest(model=model, workload=workload)


def workload_from_settings(settings: Mapping[str, str], *, where: str) -> Workload:
    """A workload from ``{"max-tokens": "8192", ...}`` (annotation keys, or CLI flags' names).

    ``where`` prefixes each key in error messages (``"kantaloupe.io/llm: "`` or ``"--"``).
    """
    fields: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in _FIELDS:
            raise InvalidRequestError(
                f"{where}{key}", value, "is not a known key", f"use {', '.join(KNOWN_KEYS)}"
            )
        field, parse, expected = _FIELDS[key]
        try:
            fields[field] = parse(value.strip())
        except ValueError:
            raise InvalidRequestError(
                f"{where}{key}", value, "is not valid", f"give {expected}"
            ) from None
    try:
        return Workload(**fields)
    except InvalidRequestError as e:
        raise InvalidRequestError(f"{where}{e.where}", e.value, e.problem, e.fix) from e


def decide_from_annotation(text: str, fleet: Sequence[GpuModel]) -> SizingDecision:
    """Size the slice ``text`` asks for; refuse it when no GPU model of ``fleet`` can hold it.

    An empty ``fleet`` means the cluster's GPUs are unknown: the slice is sized, never refused
    for fit. Raises :class:`InvalidRequestError` for malformed text or an unknown model.
    """
    request = parse_llm_annotation(text)
    choice = find_model(request.model, where=f"{keys.LLM}: model")
    workload = request.workload
    if workload.precision is None and choice.implied_precision is not None:
        workload = replace(workload, precision=choice.implied_precision)
    result = estimate(choice.architecture, workload)
    gpumem = result.gpumem_mib
    fits = fit_fleet(gpumem, fleet) if fleet else ()
    if fleet and not any(f.fits for f in fits):
        largest = max(fleet, key=lambda g: g.memory_mib)
        raise InvalidRequestError(
            keys.LLM,
            text,
            f"needs {gpumem} MiB per GPU, more than any GPU model in the cluster offers "
            f"(largest: {largest.name}, {largest.memory_mib} MiB)",
            "lower max-tokens or concurrency, pick a quantised dtype (fp8, awq), or split the "
            "model with tensor-parallel=2",
        )
    return SizingDecision(
        gpumem_mib=gpumem,
        gpus=workload.tensor_parallel,
        estimate=result,
        fits=fits,
        record=to_record(result, fits),
    )


def to_record(result: Estimate, fits: Sequence[FleetFit]) -> Sizing:
    """The ``kantaloupe.io/sizing`` document for an estimate."""
    parts = result.parts_mib()
    workload = result.workload
    return Sizing(
        model=result.architecture.name,
        dtype=result.precision.value,
        kv_dtype=result.kv_precision.value,
        max_tokens=workload.max_tokens,
        concurrency=workload.concurrency,
        gpumem_mib=result.gpumem_mib,
        weights_mib=parts["weights"],
        kv_cache_mib=parts["kv_cache"],
        activations_mib=parts["activations"],
        engine_reserve_mib=parts["engine_reserve"],
        cuda_context_mib=parts["cuda_context"],
        total_mib=parts["total"],
        tensor_parallel=workload.tensor_parallel,
        gpu_utilization=workload.gpu_utilization,
        fits=tuple(f.gpu.name for f in fits if f.fits),
    )
