"""The Kubernetes adapter's errors: the API server's answers mapped onto Kantaloupe's tree.

::

    KantaloupeError
    └── KubeError                      any failed call to the API server
        ├── TransportError             no HTTP answer (connection refused, reset, timeout)
        ├── UnauthorizedError          401
        ├── ForbiddenError             403: RBAC is missing a rule
        ├── NotFoundError              404
        ├── GoneError                  410: a watch's resourceVersion is too old; relist
        ├── InvalidError               400/422: the object or patch was refused
        ├── TooManyRequestsError       429: back off and retry
        ├── ServerError                5xx
        └── ConflictError              409 (also ``api.errors.ConflictError``): retry within a bound
            └── AlreadyExistsError     409 AlreadyExists on create

Only ``kind: Status`` bodies are trusted for the message; other text is cut to 256 characters.
"""

from __future__ import annotations

from typing import Final

import msgspec

from kantaloupe.api import errors as api_errors


class KubeError(api_errors.KantaloupeError):
    """A call to the API server failed; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str, *, what: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what
        where = f"{what}: " if what else ""
        super().__init__(f"{where}{status} {reason}: {message}" if status else f"{where}{message}")


class TransportError(KubeError):
    """No HTTP answer from the API server (connection refused or reset, timeout)."""


class UnauthorizedError(KubeError):
    """401: the credentials were refused."""


class ForbiddenError(KubeError):
    """403: the service account lacks an RBAC rule (the message names it)."""


class NotFoundError(KubeError):
    """404: the object (or its namespace) does not exist."""


class GoneError(KubeError):
    """410: the resourceVersion is too old (a watch must relist)."""


class InvalidError(KubeError):
    """400 or 422: the API server refused the object or patch."""


class TooManyRequestsError(KubeError):
    """429: throttled by the API server's priority and fairness."""


class ServerError(KubeError):
    """5xx: the API server failed."""


class ConflictError(KubeError, api_errors.ConflictError):
    """409: the object changed since it was read; re-read and retry within a bound."""


class AlreadyExistsError(ConflictError):
    """409 AlreadyExists: an object of that name exists."""


class _Status(msgspec.Struct):
    kind: str = ""
    status: str = ""
    message: str = ""
    reason: str = ""
    code: int = 0


_STATUS_DECODER: Final = msgspec.json.Decoder(_Status)

_BY_STATUS: Final[dict[int, type[KubeError]]] = {
    400: InvalidError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
    429: TooManyRequestsError,
}


def from_response(status: int, body: bytes, *, what: str = "") -> KubeError:
    """The error for a non-2xx answer; trusts the body only when it is a ``kind: Status``."""
    reason, message = "", ""
    try:
        doc = _STATUS_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        doc = None
    if doc is not None and doc.kind == "Status":
        reason, message = doc.reason, api_errors.shorten(doc.message)
    else:
        message = api_errors.shorten(body.decode("utf-8", "replace").strip())
    if status == 409 and reason == "AlreadyExists":
        cls: type[KubeError] = AlreadyExistsError
    elif status == 200 and reason == "Expired":
        cls = GoneError  # an ERROR event inside a watch stream
    else:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else KubeError)
    return cls(status, reason or _DEFAULT_REASON.get(status, "Error"), message, what=what)


def from_status_object(raw: bytes, *, what: str = "") -> KubeError:
    """The error carried by a watch ``ERROR`` event (its object is a ``Status``)."""
    try:
        doc = _STATUS_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return KubeError(0, "Error", api_errors.shorten(raw.decode("utf-8", "replace")), what=what)
    cls = _BY_STATUS.get(doc.code, ServerError if doc.code >= 500 else KubeError)
    if doc.reason in ("Expired", "Gone"):
        cls = GoneError
    return cls(doc.code, doc.reason or "Error", api_errors.shorten(doc.message), what=what)


_DEFAULT_REASON: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
