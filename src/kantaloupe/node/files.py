"""Decoding of the agent's YAML files (config, inventory), with errors naming the field.

A msgspec error names the field by a JSON path (``$.devices[1].memory_mib``); this module turns it
into an :class:`~kantaloupe.api.errors.InvalidConfigError` whose ``where`` is ``<file>: <field>``,
whose value is the field's value as written, and whose fix says what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from kantaloupe.api.errors import InvalidConfigError

T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")
_REQUIRED = re.compile(r"missing required field `(?P<name>[^`]+)`")
_STEP = re.compile(r"\.(?P<key>[A-Za-z0-9_-]+)|\[(?P<index>\d+)\]")
_MISSING = object()


def decode_yaml_file(path: Path, kind: type[T], *, what: str, fields: str) -> T:
    """Read and decode ``path`` as ``kind``; ``fields`` lists valid settings for the fix text."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidConfigError(
            str(path), what, f"cannot be read ({e.strerror or e})", f"mount the {what} there"
        ) from e
    if not raw.strip():
        raw = b"{}"
    try:
        plain = msgspec.yaml.decode(raw)
    except msgspec.DecodeError as e:
        raise InvalidConfigError(
            str(path), what, f"is not valid YAML ({_one_line(e)})", "fix the syntax there"
        ) from e
    if not isinstance(plain, dict):
        raise InvalidConfigError(
            str(path), plain, f"the {what} must be a mapping", f"write `version: v1` and {fields}"
        )
    version = plain.get("version", "v1")
    if version != "v1":
        raise InvalidConfigError(
            f"{path}: version", version, "is not supported", "write `version: v1`"
        )
    try:
        return msgspec.convert(plain, kind)
    except msgspec.ValidationError as e:
        raise _field_error(path, plain, str(e), fields) from e


def _field_error(path: Path, plain: Any, message: str, fields: str) -> InvalidConfigError:
    match = _AT.search(message)
    dotted = match.group("path") if match else ""
    problem = _AT.sub("", message)
    unknown = _UNKNOWN.search(problem)
    if unknown:
        dotted += f".{unknown.group('name')}"
        where = f"{path}: {_render(dotted)}"
        value = _lookup(plain, dotted)
        return InvalidConfigError(
            where, value, "is not a known setting", f"check the spelling; valid: {fields}"
        )
    required = _REQUIRED.search(problem)
    if required:
        where = f"{path}: {_render(dotted + '.' + required.group('name'))}"
        return InvalidConfigError(where, None, "is required", "add the field")
    value = _lookup(plain, dotted)
    where = f"{path}: {_render(dotted) or '(top level)'}"
    return InvalidConfigError(
        where,
        None if value is _MISSING else value,
        problem,
        "see docs/node-agent.md for the format",
    )


def _render(dotted: str) -> str:
    return dotted.lstrip(".")


def _lookup(plain: Any, dotted: str) -> Any:
    node = plain
    for step in _STEP.finditer(dotted):
        key, index = step.group("key"), step.group("index")
        if key is not None and isinstance(node, dict) and key in node:
            node = node[key]
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return _MISSING
    return node


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
