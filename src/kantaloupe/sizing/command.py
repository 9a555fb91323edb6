"""``kantaloupe size``: the GPU memory a model needs for a token length, and where it fits.

Reads files and, with ``--kubeconfig``, the nodes' registrations; everything else is the pure
estimate in :mod:`kantaloupe.sizing.estimate`. Every flag has an env twin
(``KANTALOUPE_MAX_TOKENS`` for ``--max-tokens``); a flag wins over its env value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kantaloupe.api import keys
from kantaloupe.api.errors import InvalidConfigError, MalformedAnnotationError
from kantaloupe.api.registration import NodeDevices, decode_registration
from kantaloupe.sizing import catalogue, config_json, fleet
from kantaloupe.sizing.annotation import workload_from_settings
from kantaloupe.sizing.architecture import Architecture, Precision, parse_precision
from kantaloupe.sizing.catalogue import GpuModel
from kantaloupe.sizing.estimate import Estimate, estimate

# Flags that become Workload fields; each flag's name is the annotation key.
_WORKLOAD_FLAGS: dict[str, str] = {
    "dtype": "weight format: fp32, fp16, bf16, fp8, int8, int4, awq, gptq, gptq-int8 "
    "(default: the checkpoint's)",
    "kv-dtype": "KV-cache format: fp16, bf16, fp8, fp32 (default: 16 bits)",
    "max-tokens": "tokens per sequence, prompt and output (vLLM --max-model-len; 8k = 8192) [4096]",
    "concurrency": "sequences held at once (vLLM --max-num-seqs) [1]",
    "tensor-parallel": "GPUs the model is split across; sizes are per GPU [1]",
    "prefill-chunk": "tokens per forward pass (vLLM --max-num-batched-tokens) [8192]",
    "engine-reserve": "MiB for CUDA graphs, allocator slack and sampler [1024]",
    "cuda-context": "MiB for the CUDA context and cuBLAS workspaces [512]",
    "gpu-utilization": "share of the slice the engine uses (vLLM 0.9) [1.0]",
}


def _env(flag: str) -> str | None:
    return os.environ.get("KANTALOUPE_" + flag.upper().replace("-", "_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        help="catalogue model name, e.g. qwen2.5-7b-instruct or meta-llama/Llama-3.1-8B-Instruct",
    )
    parser.add_argument(
        "--config-json", metavar="FILE", default=_env("config-json"),
        help="size from a Hugging Face config.json instead of the catalogue",
    )  # fmt: skip
    for flag, help_text in _WORKLOAD_FLAGS.items():
        parser.add_argument(f"--{flag}", default=_env(flag), metavar="VALUE", help=help_text)
    where = parser.add_argument_group("where it fits (default: every catalogued GPU model)")
    where.add_argument(
        "--fleet", metavar="FILE.yaml", default=_env("fleet"),
        help="GPU models of your fleet: version: v1, gpus: [{model, memory_mib?}]",
    )  # fmt: skip
    where.add_argument(
        "--gpu", action="append", default=[], metavar="NAME",
        help='a GPU model ("RTX 4090", "A100 80GB") or NAME=MiB; repeatable',
    )  # fmt: skip
    where.add_argument(
        "--kubeconfig", metavar="PATH", default=_env("kubeconfig"),
        help="read the GPU models the live cluster's nodes registered",
    )  # fmt: skip
    parser.add_argument(
        "--json", action=argparse.BooleanOptionalAction, default=_env("json") in ("1", "true"),
        help="print one JSON object",
    )  # fmt: skip
    parser.add_argument("--list-models", action="store_true", help="list catalogue models")
    parser.add_argument("--list-gpus", action="store_true", help="list catalogue GPU models")


def run(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models(args.json)
    if args.list_gpus:
        return _list_gpus(args.json)
    arch, implied = _architecture(args)
    settings = {
        flag: value
        for flag in _WORKLOAD_FLAGS
        if (value := getattr(args, flag.replace("-", "_"))) is not None
    }
    workload = workload_from_settings(settings, where="--")
    if workload.precision is None and implied is not None:
        workload = replace(workload, precision=implied)
    result = estimate(arch, workload)
    gpus, source = _fleet(args)
    fits = fleet.fit_fleet(result.gpumem_mib, gpus)
    if args.json:
        print(json.dumps(_as_json(result, fits, source), indent=None))
    else:
        print(_as_text(result, fits, source))
    return 0


def _architecture(args: argparse.Namespace) -> tuple[Architecture, Precision | None]:
    if args.config_json:
        path = Path(args.config_json)
        dtype = parse_precision(args.dtype) if args.dtype else None
        name = args.model or path.parent.name or path.stem
        return config_json.architecture_from_config(
            _read(path, "--config-json"), name=name, where=str(path), dtype=dtype
        ), None
    if not args.model:
        raise InvalidConfigError(
            "model", None, "is missing",
            "name a catalogue model (see --list-models) or pass --config-json FILE",
        )  # fmt: skip
    choice = catalogue.find_model(args.model)
    return choice.architecture, choice.implied_precision


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidConfigError(
            where, str(path), f"cannot be read ({e.strerror})", "fix the path"
        ) from e


def _fleet(args: argparse.Namespace) -> tuple[tuple[GpuModel, ...], str]:
    gpus: list[GpuModel] = [fleet.gpu_from_text(g) for g in args.gpu]
    sources = ["--gpu"] if args.gpu else []
    if args.fleet:
        gpus.extend(fleet.decode_fleet(_read(Path(args.fleet), "--fleet"), where=args.fleet))
        sources.append(args.fleet)
    if args.kubeconfig:
        gpus.extend(asyncio.run(_cluster_fleet(args.kubeconfig)))
        sources.append("the cluster")
    if not sources:
        return catalogue.gpu_models(), "the GPU catalogue"
    return fleet.dedupe(gpus), " + ".join(sources)


async def _cluster_fleet(kubeconfig: str) -> tuple[GpuModel, ...]:
    """GPU models from every node's ``kantaloupe.io/node-devices``; bad ones are skipped."""
    from kubernetes_asyncio import client, config

    try:
        api = await config.new_client_from_config(config_file=kubeconfig)
    except (config.ConfigException, OSError) as e:
        raise InvalidConfigError(
            "--kubeconfig", kubeconfig, f"cannot be loaded ({e})", "give a valid kubeconfig"
        ) from e
    async with api:
        nodes = await client.CoreV1Api(api).list_node()
    docs: list[NodeDevices] = []
    for node in nodes.items:
        raw = (node.metadata.annotations or {}).get(keys.NODE_DEVICES)
        if not raw:
            continue
        try:
            docs.append(decode_registration(raw))
        except MalformedAnnotationError as e:
            print(f"kantaloupe size: skipped node {node.metadata.name}: {e}", file=sys.stderr)
    return fleet.fleet_from_registrations(docs)


def _as_json(result: Estimate, fits: Sequence[fleet.FleetFit], source: str) -> dict[str, Any]:
    arch, workload = result.architecture, result.workload
    return {
        "model": arch.name,
        "parameters": arch.parameters,
        "dtype": result.precision.value,
        "kv_dtype": result.kv_precision.value,
        "max_tokens": workload.max_tokens,
        "concurrency": workload.concurrency,
        "tensor_parallel": workload.tensor_parallel,
        "gpu_utilization": workload.gpu_utilization,
        "kv_bytes_per_token": result.kv_bytes_per_token,
        "breakdown_mib": result.parts_mib(),
        "gpumem_mib": result.gpumem_mib,
        "fleet_source": source,
        "fleet": [
            {"gpu": f.gpu.name, "memory_mib": f.gpu.memory_mib, "per_card": f.per_card}
            for f in fits
        ],
    }


def _as_text(result: Estimate, fits: Sequence[fleet.FleetFit], source: str) -> str:
    arch, workload = result.architecture, result.workload
    parts = result.parts_mib()
    tokens = workload.max_tokens * workload.concurrency
    per_gpu = f", per GPU of {workload.tensor_parallel}" if workload.tensor_parallel > 1 else ""
    notes = {
        "weights": f"{arch.parameters / 1e9:.2f} B parameters as {result.precision.value}",
        "kv_cache": f"{result.kv_bytes_per_token / 1024:g} KiB/token × {tokens:,} tokens "
        f"({workload.max_tokens:,} × {workload.concurrency}), {result.kv_precision.value}",
        "activations": f"{min(tokens, workload.prefill_chunk_tokens):,}-token prefill chunk "
        "+ logits",
        "engine_reserve": "CUDA graphs, allocator slack",
        "cuda_context": "CUDA context, cuBLAS workspace",
        "total": "",
    }
    labels = {
        "weights": "weights",
        "kv_cache": "KV cache",
        "activations": "activations",
        "engine_reserve": "engine reserve",
        "cuda_context": "CUDA context",
        "total": "total",
    }
    lines = [
        f"{arch.name} ({result.precision.value}): {workload.max_tokens:,} tokens × "
        f"{workload.concurrency} sequence{'s' if workload.concurrency > 1 else ''}{per_gpu}",
        "",
        f"  {'part':<16}{'MiB':>9}  note",
    ]
    for key, value in parts.items():
        if key == "total":
            lines.append(f"  {'-' * 25}")
        lines.append(f"  {labels[key]:<16}{value:>9,}  {notes[key]}".rstrip())
    if arch.max_context and workload.max_tokens > arch.max_context:
        lines.append(
            f"  note: {workload.max_tokens:,} tokens exceeds the model's "
            f"{arch.max_context:,}-token context"
        )
    utilisation = (
        f" ÷ {workload.gpu_utilization:g} utilisation" if workload.gpu_utilization < 1 else ""
    )
    gpu_count = (
        f"  nvidia.com/gpu: {workload.tensor_parallel}" if workload.tensor_parallel > 1 else ""
    )
    lines += [
        "",
        f"recommend: nvidia.com/gpumem: {result.gpumem_mib}{gpu_count}   "
        f"(total{utilisation}, rounded up to 256 MiB)",
        "",
        f"fits on ({source}):",
        f"  {'GPU':<16}{'MiB':>9}  per card",
    ]
    for f in fits:
        lines.append(f"  {f.gpu.name:<16}{f.gpu.memory_mib:>9,}  {f.per_card if f.fits else 'no'}")
    return "\n".join(lines)


def _list_models(as_json: bool) -> int:
    archs = catalogue.models()
    if as_json:
        print(json.dumps({"models": [a.name for a in archs], "names": catalogue.model_names()}))
        return 0
    for a in archs:
        print(f"{a.name:<32}{a.parameters / 1e9:>7.2f} B  {a.dtype.value:<5} ctx {a.max_context:,}")
    return 0


def _list_gpus(as_json: bool) -> int:
    gpus = catalogue.gpu_models()
    if as_json:
        print(json.dumps({"gpus": [{"gpu": g.name, "memory_mib": g.memory_mib} for g in gpus]}))
        return 0
    for g in gpus:
        print(f"{g.name:<16}{g.memory_mib:>9,} MiB")
    return 0
