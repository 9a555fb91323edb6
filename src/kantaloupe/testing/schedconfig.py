"""Render the kube-scheduler configuration from the template the Helm chart also uses.

The template, ``charts/kantaloupe/files/kube-scheduler-config.yaml``, holds ``@@NAME@@`` tokens
that Helm fills with ``replace`` and this module fills with :func:`render_scheduler_config`. Its
header documents every token; keeping one template means the test control plane runs the same
scheduler configuration that users deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_MANAGED_RESOURCES",
    "SchedulerConfig",
    "SchedulerConfigError",
    "render_scheduler_config",
    "template_path",
]

#: Extended resources whose pods reach the extender; kube-scheduler itself ignores them.
DEFAULT_MANAGED_RESOURCES: tuple[str, ...] = (
    "nvidia.com/gpu",
    "nvidia.com/gpumem",
    "nvidia.com/gpumem-percentage",
    "nvidia.com/gpucores",
    "nvidia.com/priority",
)

_TOKEN = re.compile(r"@@[A-Z0-9_]+@@")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class SchedulerConfigError(ValueError):
    """A setting cannot be rendered into the template, or the template has unfilled tokens."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Settings for one rendering of the scheduler template (one field per ``@@TOKEN@@``)."""

    extender_url: str
    """``urlPrefix`` of the extender, e.g. ``http://127.0.0.1:8888``."""
    kubeconfig: str = ""
    """Path of the scheduler's kubeconfig; ``""`` means in-cluster configuration."""
    scheduler_name: str = "kantaloupe-scheduler"
    """Profile that pods select through ``spec.schedulerName``."""
    default_profile: bool = False
    """Also serve ``default-scheduler`` (the test control plane has no other scheduler)."""
    leader_elect: bool = False
    leader_elect_name: str = "kantaloupe-scheduler"
    """Lease name; never ``kube-scheduler``, which the cluster's own scheduler holds."""
    leader_elect_namespace: str = "kube-system"
    prioritize_verb: str = ""
    """``""`` to skip the scoring call, else the verb appended to ``extender_url``."""
    http_timeout: str = "30s"
    """Go duration bounding every extender call."""
    enable_https: bool = False
    tls_insecure: bool = False
    tls_ca_file: str = ""
    managed_resources: tuple[str, ...] = field(default=DEFAULT_MANAGED_RESOURCES)

    def tokens(self) -> dict[str, str]:
        """The replacement text for every token of the template, validated."""
        for name, value in (
            ("extender_url", self.extender_url),
            ("kubeconfig", self.kubeconfig),
            ("scheduler_name", self.scheduler_name),
            ("leader_elect_name", self.leader_elect_name),
            ("leader_elect_namespace", self.leader_elect_namespace),
            ("prioritize_verb", self.prioritize_verb),
            ("tls_ca_file", self.tls_ca_file),
        ):
            if any(c in value for c in '"\\\n'):
                raise SchedulerConfigError(
                    f"{name}={value!r}: quotes, backslashes and newlines are not allowed "
                    "(the template puts string values inside double quotes)"
                )
        if not self.extender_url.startswith(("http://", "https://")):
            raise SchedulerConfigError(
                f"extender_url={self.extender_url!r}: must start with http:// or https://"
            )
        if self.enable_https != self.extender_url.startswith("https://"):
            raise SchedulerConfigError(
                f"extender_url={self.extender_url!r} with enable_https={self.enable_https}: "
                "the scheme and enable_https must agree"
            )
        if self.tls_insecure and self.tls_ca_file:
            raise SchedulerConfigError(
                "tls_insecure=True with tls_ca_file set: client-go refuses both; pick one"
            )
        if not _DURATION.match(self.http_timeout):
            raise SchedulerConfigError(
                f"http_timeout={self.http_timeout!r}: not a Go duration (e.g. '30s', '1m30s')"
            )
        if not self.scheduler_name or self.scheduler_name == "default-scheduler":
            raise SchedulerConfigError(
                f"scheduler_name={self.scheduler_name!r}: must be set and must not be "
                "default-scheduler (use default_profile=True for that)"
            )
        resources = [{"name": r, "ignoredByScheduler": True} for r in self.managed_resources]
        return {
            "@@KUBECONFIG@@": self.kubeconfig,
            "@@LEADER_ELECT@@": _bool(self.leader_elect),
            "@@LEADER_ELECT_NAME@@": self.leader_elect_name,
            "@@LEADER_ELECT_NAMESPACE@@": self.leader_elect_namespace,
            "@@SCHEDULER_NAME@@": self.scheduler_name,
            "@@DEFAULT_PROFILE@@": (
                "- schedulerName: default-scheduler" if self.default_profile else ""
            ),
            "@@EXTENDER_URL@@": self.extender_url,
            "@@PRIORITIZE_VERB@@": self.prioritize_verb,
            "@@HTTP_TIMEOUT@@": self.http_timeout,
            "@@ENABLE_HTTPS@@": _bool(self.enable_https),
            "@@TLS_INSECURE@@": _bool(self.tls_insecure),
            "@@TLS_CA_FILE@@": self.tls_ca_file,
            "@@MANAGED_RESOURCES@@": json.dumps(resources),
        }


def _bool(value: bool) -> str:
    return "true" if value else "false"


def template_path() -> Path:
    """The chart's template in this checkout (``charts/kantaloupe/files/...``)."""
    root = Path(__file__).resolve().parents[3]
    return root / "charts" / "kantaloupe" / "files" / "kube-scheduler-config.yaml"


def render_scheduler_config(config: SchedulerConfig, template: str | None = None) -> str:
    """Fill every token of ``template`` (default: the chart's file) from ``config``.

    Raises :class:`SchedulerConfigError` for an invalid setting, for a token the template lacks
    (a renamed token must not silently stop applying) and for a token left unfilled.
    """
    text = template_path().read_text(encoding="utf-8") if template is None else template
    return _fill(text, config.tokens())


def _fill(text: str, tokens: Mapping[str, str]) -> str:
    body_start = _body_start(text)
    head, body = text[:body_start], text[body_start:]
    missing = sorted(t for t in tokens if t not in body)
    if missing:
        raise SchedulerConfigError(f"template lacks the tokens {missing}; is it out of date?")
    for token, value in tokens.items():
        body = body.replace(token, value)
    left = sorted(set(_TOKEN.findall(body)))
    if left:
        raise SchedulerConfigError(
            f"template tokens {left} have no setting; add them to SchedulerConfig.tokens()"
        )
    return head + body


def _body_start(text: str) -> int:
    """Offset of the first line that is not a comment: the header documents tokens verbatim."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            return offset
        offset += len(line)
    return offset
