"""Shared decode step for every versioned JSON format: bytes in, typed value or our error out."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from kantaloupe.api.errors import MalformedAnnotationError, shorten

T = TypeVar("T")


def decode_json(key: str, raw: str | bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode ``raw`` with ``decoder``; any failure becomes :class:`MalformedAnnotationError`."""
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MalformedAnnotationError(key, shorten(str(raw)), f"does not decode ({e})") from e
    except (UnicodeDecodeError, ValueError, OverflowError) as e:
        raise MalformedAnnotationError(key, shorten(repr(raw)), f"does not decode ({e})") from e
