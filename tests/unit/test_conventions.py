"""House rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kantaloupe"
_RESERVED = set(logging.LogRecord("n", 0, "p", 0, "m", (), None).__dict__) | {"message", "asctime"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [
        (p, ast.parse(p.read_text())) for p in sorted(SRC.rglob("*.py")) if "proto" not in p.parts
    ]


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ids.add(id(node.value))
    return ids


def test_internal_annotation_keys_live_only_in_api_keys() -> None:
    offenders = []
    for path, tree in _modules():
        if path == SRC / "api" / "keys.py":
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "kantaloupe.io/" in node.value
                and id(node) not in docs
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == [], "use the constants in kantaloupe.api.keys"


def test_log_extras_never_overwrite_log_record_fields() -> None:
    offenders = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    offenders += [
                        f"{path.relative_to(SRC)}:{node.lineno} {k.value}"
                        for k in kw.value.keys
                        if isinstance(k, ast.Constant) and k.value in _RESERVED
                    ]
    assert offenders == [], "logging raises KeyError on these keys at INFO level"
