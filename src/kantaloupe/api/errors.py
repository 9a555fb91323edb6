"""Kantaloupe's exception tree.

::

    KantaloupeError
    ├── InputError                 user-fixable; faces map it to a protocol-correct refusal
    │   ├── InvalidRequestError    a pod's GPU request or user annotation is wrong
    │   ├── InvalidConfigError     a flag, env value, config or inventory file is wrong
    │   ├── InvalidScenarioError   a simulator scenario or trace file is wrong
    │   └── MalformedAnnotationError  an internal annotation fails to decode
    └── ConflictError              state moved under us; retry within a bound

``kube/`` wraps the Kubernetes client's own errors into its own subclasses of these.
No-fit is never an exception: ``scheduling.fit`` returns reasons.
"""

from __future__ import annotations

_MAX_ECHO = 256


def shorten(text: str, limit: int = _MAX_ECHO) -> str:
    """Cut foreign text before echoing it in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class KantaloupeError(Exception):
    """Base of every error Kantaloupe raises on purpose."""


class InputError(KantaloupeError):
    """Bad input a user can fix; the message says what, where and what to do."""

    def __init__(self, where: str, value: object, problem: str, fix: str) -> None:
        self.where = where
        self.value = value
        self.problem = problem
        self.fix = fix
        super().__init__(f"{where}={shorten(repr(value))}: {problem}; {fix}")


class InvalidRequestError(InputError):
    """A GPU request or user-facing pod annotation is invalid."""


class InvalidConfigError(InputError):
    """A setting (flag, env, config file, inventory file) is invalid."""


class InvalidScenarioError(InputError):
    """A simulator scenario or trace file is invalid."""


class MalformedAnnotationError(InputError):
    """An internal annotation (ours or HAMi's) does not decode."""

    def __init__(self, key: str, value: object, problem: str) -> None:
        super().__init__(
            key,
            value,
            problem,
            "the object is skipped until its writer re-publishes it; remove the annotation "
            "if it was written by hand",
        )


class ConflictError(KantaloupeError):
    """The state changed between read and write; the caller may retry within a bound."""
