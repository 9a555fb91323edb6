"""The bundled catalogues: popular open models (``models.yaml``) and GPU models (``gpus.yaml``).

Both are package data read once through :mod:`importlib.resources`; lookups normalise names
and suggest close ones when nothing matches.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import re
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import msgspec

from kantaloupe.api.errors import InvalidConfigError, InvalidRequestError, shorten
from kantaloupe.sizing.architecture import Architecture, Precision, parse_precision

Count = Annotated[int, msgspec.Meta(ge=1, le=2**40)]


class ModelEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    parameters: Count
    layers: Count
    hidden_size: Count
    attention_heads: Count
    kv_heads: Count
    head_dim: Count
    intermediate_size: Count
    vocab_size: Count
    dtype: Precision
    source: str = ""
    """The Hugging Face repository whose config.json the numbers come from."""
    aliases: tuple[str, ...] = ()
    tie_word_embeddings: bool = False
    experts: Count = 1
    experts_per_token: Count = 1
    max_context: int = 0


class ModelCatalogueFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    models: tuple[ModelEntry, ...]
    version: Literal["v1"] = "v1"


class GpuEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    memory_mib: Count
    aliases: tuple[str, ...] = ()


class GpuCatalogueFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    gpus: tuple[GpuEntry, ...]
    version: Literal["v1"] = "v1"


_File = TypeVar("_File", ModelCatalogueFile, GpuCatalogueFile)


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A catalogue model and the precision its name implied (``...-awq``), if any."""

    architecture: Architecture
    implied_precision: Precision | None


@dataclass(frozen=True, slots=True)
class GpuModel:
    """A GPU model and the memory one card offers (NVML's total, or schedulable memory)."""

    name: str
    memory_mib: int
    split: int = 0
    """Most slices one card takes (the node agent's ``split``); 0: no limit but memory."""


def normalise_model_name(text: str) -> str:
    """``"Qwen/Qwen2.5-7B-Instruct"`` → ``"qwen2.5-7b-instruct"``."""
    name = text.strip().rsplit("/", 1)[-1].lower()
    name = re.sub(r"[\s_]+", "-", name)
    return name.removeprefix("meta-")


def normalise_gpu_name(text: str) -> str:
    """``"NVIDIA GeForce RTX 4090"`` → ``"rtx4090"``; ``"A100-SXM4-80GB"`` → ``"a100sxm480gb"``."""
    name = text.lower()
    for noise in ("nvidia", "geforce", "tesla"):
        name = name.replace(noise, "")
    return re.sub(r"[^a-z0-9.]", "", name)


_QUANT_SUFFIXES = (
    "gptq-int4",
    "gptq-int8",
    "awq-int4",
    "int4-awq",
    "gptq",
    "awq",
    "fp8",
    "int8",
    "int4",
    "w8a8",
    "bf16",
    "fp16",
)


def _read(resource: str) -> bytes:
    return importlib.resources.files("kantaloupe.sizing").joinpath(resource).read_bytes()


def _decode(raw: bytes, where: str, kind: type[_File]) -> _File:
    try:
        return msgspec.yaml.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidConfigError(
            where,
            shorten(raw.decode(errors="replace"), 60),
            f"does not decode ({e})",
            "fix the named field; see the bundled catalogue for the format",
        ) from e


def _to_architecture(m: ModelEntry) -> Architecture:
    return Architecture(
        name=m.name,
        parameters=m.parameters,
        layers=m.layers,
        hidden_size=m.hidden_size,
        attention_heads=m.attention_heads,
        kv_heads=m.kv_heads,
        head_dim=m.head_dim,
        vocab_size=m.vocab_size,
        intermediate_size=m.intermediate_size,
        dtype=m.dtype,
        tie_word_embeddings=m.tie_word_embeddings,
        experts=m.experts,
        experts_per_token=m.experts_per_token,
        max_context=m.max_context,
    )


@functools.cache
def _models() -> tuple[dict[str, Architecture], tuple[Architecture, ...]]:
    doc = _decode(_read("models.yaml"), "models.yaml", ModelCatalogueFile)
    archs = tuple(_to_architecture(m) for m in doc.models)
    index: dict[str, Architecture] = {}
    for entry, arch in zip(doc.models, archs, strict=True):
        for name in (entry.name, *entry.aliases):
            index[normalise_model_name(name)] = arch
    return index, archs


@functools.cache
def _gpus() -> tuple[dict[str, GpuModel], tuple[GpuModel, ...]]:
    doc = _decode(_read("gpus.yaml"), "gpus.yaml", GpuCatalogueFile)
    gpus = tuple(GpuModel(g.name, g.memory_mib) for g in doc.gpus)
    index: dict[str, GpuModel] = {}
    for entry, gpu in zip(doc.gpus, gpus, strict=True):
        for name in (entry.name, *entry.aliases):
            index[normalise_gpu_name(name)] = gpu
    return index, gpus


def models() -> tuple[Architecture, ...]:
    """Every catalogue model, in file order."""
    return _models()[1]


def model_names() -> tuple[str, ...]:
    """Every name the catalogue answers to (canonical names and aliases), sorted."""
    return tuple(sorted(_models()[0]))


def gpu_models() -> tuple[GpuModel, ...]:
    """Every catalogue GPU model, in file order."""
    return _gpus()[1]


def find_model(name: str, *, where: str = "model") -> ModelChoice:
    """The catalogue model ``name`` names; a quantisation suffix becomes the implied precision."""
    index = _models()[0]
    key = normalise_model_name(name)
    if key in index:
        return ModelChoice(index[key], None)
    for suffix in _QUANT_SUFFIXES:
        base = key.removesuffix("-" + suffix)
        if base != key and base in index:
            return ModelChoice(index[base], parse_precision(suffix))
    close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise InvalidRequestError(
        where,
        name,
        "is not in the model catalogue",
        f"{hint}run `kantaloupe size --list-models` for the known names, or size from the "
        "model's config.json with `kantaloupe size --config-json FILE`",
    )


def find_gpu(name: str) -> GpuModel | None:
    """The catalogue GPU model ``name`` names (exact after normalising, then by substring)."""
    index = _gpus()[0]
    key = normalise_gpu_name(name)
    if not key:
        return None
    if key in index:
        return index[key]
    matches = {gpu for alias, gpu in index.items() if key in alias or alias in key}
    return matches.pop() if len(matches) == 1 else None


def gpu_suggestions(name: str) -> list[str]:
    """Catalogue GPU names close to ``name``, for an error message."""
    names = [g.name for g in gpu_models()]
    return difflib.get_close_matches(name, names, n=3, cutoff=0.4)
