"""Settings from flags, ``KANTALOUPE_<FLAG>`` env vars and a ``version: v1`` YAML file.

Precedence: flag > env > file > default. Every error names the setting and where it came from.
A component declares its options once::

    OPTIONS = (
        Option("port", int, 8888, "listen port"),
        Option("reservation-ttl", parse_duration, 30.0, "release unbound reservations after"),
        Option("leader-elect", parse_bool, True, "campaign for a Lease", flag_kind="bool"),
    )
    add_options(parser, OPTIONS)                 # --port, --reservation-ttl, --[no-]leader-elect
    values = resolve(OPTIONS, args, os.environ)  # {"port": 8888, "reservation_ttl": 30.0, ...}

The file (``--config``) maps the same kebab-case names to values; unknown names and any
``version`` other than ``v1`` are refused.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from kantaloupe.api.errors import InvalidConfigError

ENV_PREFIX: Final = "KANTALOUPE_"
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from ``"30s"``, ``"1m30s"``, ``"500ms"`` or a plain number of seconds."""
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError("must not be negative")
        return value
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError("is not a duration (e.g. 30s, 1m30s, 500ms)")
    return total


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not a boolean (true or false)")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: ``name`` is kebab-case (the flag, the file key; env is UPPER_SNAKE)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    flag_kind: Literal["value", "bool"] = "value"
    choices: Sequence[str] = ()

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    parser.add_argument(
        "--config", default=None, help="YAML settings file (version: v1); env KANTALOUPE_CONFIG"
    )
    for o in options:
        text = f"{o.help} (env {o.env}; default {o.default!r})"
        if o.flag_kind == "bool":
            parser.add_argument(
                f"--{o.name}",
                dest=o.dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(
                f"--{o.name}",
                dest=o.dest,
                default=None,
                help=text,
                choices=list(o.choices) or None,
            )


def _convert(o: Option, raw: object, source: str) -> Any:
    if o.flag_kind == "bool" and isinstance(raw, bool):
        return raw
    try:
        value = o.parse(str(raw))
    except (ValueError, TypeError) as e:
        raise InvalidConfigError(
            f"{o.name} (from {source})", raw, str(e) or "is invalid", f"see --help for {o.name}"
        ) from None
    if o.choices and str(value) not in o.choices:
        raise InvalidConfigError(
            f"{o.name} (from {source})", raw, "is not allowed", f"use one of {', '.join(o.choices)}"
        )
    return value


def load_file(path: str | Path, options: Sequence[Option]) -> dict[str, object]:
    """The file's settings by kebab-case name, validated against ``options``."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise InvalidConfigError(
            "config", str(path), f"cannot be read ({e})", "check the path"
        ) from e
    except yaml.YAMLError as e:
        raise InvalidConfigError(
            "config", str(path), f"is not YAML ({e})", "fix the file's syntax"
        ) from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InvalidConfigError("config", str(path), "is not a mapping", "write key: value lines")
    version = doc.pop("version", "v1")
    if version != "v1":
        raise InvalidConfigError(
            f"version (in {path})", version, "is not a known config version", "write version: v1"
        )
    known = {o.name: o for o in options}
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = str(key).replace("_", "-")
        if name not in known:
            raise InvalidConfigError(
                f"{key} (in {path})",
                value,
                "is not a setting",
                f"known: {', '.join(sorted(known))}",
            )
        out[name] = value
    return out


def resolve(
    options: Sequence[Option], args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any]:
    """Every option's value by ``dest`` name: flag > env > file > default."""
    config_path = getattr(args, "config", None) or env.get(ENV_PREFIX + "CONFIG")
    from_file = load_file(config_path, options) if config_path else {}
    out: dict[str, Any] = {}
    for o in options:
        flag = getattr(args, o.dest, None)
        if flag is not None:
            out[o.dest] = _convert(o, flag, f"--{o.name}")
        elif o.env in env:
            out[o.dest] = _convert(o, env[o.env], o.env)
        elif o.name in from_file:
            out[o.dest] = _convert(o, from_file[o.name], f"config file {config_path}")
        else:
            out[o.dest] = o.default
    return out
