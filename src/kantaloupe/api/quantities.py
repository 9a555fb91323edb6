"""Parsing of the integer quantities HAMi's users write for GPU resources."""

from __future__ import annotations

import re

from kantaloupe.api.errors import InvalidRequestError

_INT32_MAX = 2**31 - 1
_PLAIN = re.compile(r"^\+?[0-9]+$")
_DECIMAL_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_count(where: str, raw: object, *, fix: str) -> int:
    """A non-negative integer quantity (``"4000"``, ``4000``, ``"4k"``), range-checked to int32.

    GPU resources are counts, MiB or percent: fractions and ``m`` suffixes are refused.
    """
    if isinstance(raw, bool):
        raise InvalidRequestError(where, raw, "must be a whole number", fix)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        value = _parse_text(where, text, fix)
    else:
        raise InvalidRequestError(where, raw, "must be a whole number", fix)
    if value < 0:
        raise InvalidRequestError(where, raw, "must not be negative", fix)
    if value > _INT32_MAX:
        raise InvalidRequestError(where, raw, f"is larger than {_INT32_MAX}", fix)
    return value


def _parse_text(where: str, text: str, fix: str) -> int:
    if _PLAIN.match(text):
        return int(text)
    for suffixes in (_BINARY_SUFFIX, _DECIMAL_SUFFIX):
        for suffix, factor in suffixes.items():
            digits = text[: -len(suffix)]
            if text.endswith(suffix) and _PLAIN.match(digits):
                return int(digits) * factor
    if text.startswith("-") and _PLAIN.match(text[1:]):
        raise InvalidRequestError(where, text, "must not be negative", fix)
    raise InvalidRequestError(where, text, "must be a whole number", fix)
