"""What the admission webhook decides about a pod: pure, no I/O, no HTTP.

Given the pod as typed values, the settings, the requesting user and the cluster's GPU models,
:func:`decide` returns a :class:`Decision`: allow with an RFC 6902 JSON Patch, or deny with a
closed :class:`DenialReason`, an HTTP-style code and a message the user can act on.

HAMi's semantics (``scheduling.requests`` implements them; this module only applies them):

- a container asking for any ``nvidia.com/*`` resource asks for a GPU slice;
- only memory or cores given: one card (``nvidia.com/gpu: 1``) is filled in;
- no memory, or ``gpumem-percentage: 100``, and no cores: the card is exclusive
  (``nvidia.com/gpucores: 100``);
- ``spec.schedulerName`` is set unless the pod explicitly names another scheduler
  (``default-scheduler`` is overwritten unless configured otherwise).

Kantaloupe's own rules on top: internal annotations (ours and HAMi's) may be written only by our
service accounts, on create and on every later update; privileged containers and pre-set
``spec.nodeName`` are refused for GPU-slice pods; ``kantaloupe.io/llm`` sizes ``gpumem``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from kantaloupe.api import keys, resources
from kantaloupe.api import sizing as sizing_codec
from kantaloupe.api.errors import InputError, InvalidRequestError, shorten
from kantaloupe.scheduling import requests
from kantaloupe.sizing import GpuModel, decide_from_annotation

DEFAULT_SCHEDULER: Final = "default-scheduler"
DEFAULT_TRUSTED_SERVICE_ACCOUNTS: Final = (
    "system:serviceaccount:kantaloupe:kantaloupe-scheduler",
    "system:serviceaccount:kantaloupe:kantaloupe-node-agent",
)
PROTECTED_KEYS: Final = (*keys.INTERNAL_POD_KEYS, *keys.HAMI_INTERNAL_POD_KEYS)
"""Pod annotations only trusted service accounts may add, change or remove."""


class Operation(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


class Outcome(enum.StrEnum):
    """How a request ended; the ``result`` label of ``kantaloupe_webhook_requests_total``."""

    MUTATED = "mutated"
    """Allowed with a non-empty patch."""
    ALLOWED = "allowed"
    """Allowed unchanged (no GPU slice asked, or nothing to fill)."""
    SKIPPED = "skipped"
    """Allowed unchanged because of a namespace or object exclusion."""
    DENIED = "denied"


class DenialReason(enum.StrEnum):
    """Why a pod was refused; the ``reason`` label of ``kantaloupe_webhook_denials_total``."""

    INVALID_REQUEST = "invalid_request"
    """A GPU resource or user-facing annotation is out of range or conflicting."""
    INTERNAL_ANNOTATION = "internal_annotation"
    """An internal annotation written (or changed, or removed) by someone untrusted."""
    PRIVILEGED = "privileged"
    NODE_NAME_SET = "node_name_set"
    SIZING_INVALID = "sizing_invalid"
    """``kantaloupe.io/llm`` is malformed, names an unknown model, or fits no container."""
    SIZING_NO_FIT = "sizing_no_fit"
    """``kantaloupe.io/llm`` sizes a slice larger than any GPU model of the cluster."""


_MAX_WARNING: Final = 256
"""The apiserver may truncate longer warnings."""
_FORBIDDEN: Final = frozenset({DenialReason.INTERNAL_ANNOTATION, DenialReason.PRIVILEGED})


@dataclass(frozen=True, slots=True)
class Settings:
    """The webhook's policy, built once from flags, environment and config file."""

    scheduler_name: str = "kantaloupe-scheduler"
    """Set as ``spec.schedulerName`` on GPU-slice pods (the kube-scheduler profile's name)."""
    force_overwrite_default_scheduler: bool = True
    """Overwrite an explicit ``default-scheduler`` (HAMi's default); other names are respected."""
    trusted_service_accounts: frozenset[str] = frozenset(DEFAULT_TRUSTED_SERVICE_ACCOUNTS)
    """Users (or groups) allowed to write internal pod annotations."""
    deny_privileged: bool = True
    """Refuse GPU-slice pods with a privileged container: it sees every GPU of the node."""
    excluded_namespaces: frozenset[str] = frozenset()
    """Namespaces whose pods are admitted untouched (internal annotations are still guarded)."""
    runtime_class_name: str | None = None
    """Set as ``spec.runtimeClassName`` on GPU-slice pods that name none (RKE2, k3s)."""


@dataclass(frozen=True, slots=True)
class Container:
    """The parts of a container the webhook reads. ``None`` maps are absent in the object."""

    name: str
    limits: Mapping[str, object] | None = None
    requests: Mapping[str, object] | None = None
    has_resources: bool = False
    """Whether ``resources`` exists in the object (decides the patch paths)."""
    privileged: bool = False


@dataclass(frozen=True, slots=True)
class Pod:
    """The parts of a pod the webhook reads; ``namespace`` is the request's."""

    namespace: str
    name: str = ""
    generate_name: str = ""
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] | None = None
    """``None`` when ``metadata.annotations`` is absent in the object."""
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    scheduler_name: str | None = None
    node_name: str | None = None
    runtime_class_name: str | None = None

    @property
    def display_name(self) -> str:
        name = self.name or (f"{self.generate_name}*" if self.generate_name else "<unnamed>")
        return f"{self.namespace}/{name}"


@dataclass(frozen=True, slots=True)
class User:
    """Who sent the request (``userInfo`` of the AdmissionReview)."""

    username: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PatchOperation:
    """One RFC 6902 operation; the webhook only ever emits ``add``."""

    op: str
    path: str
    value: object


@dataclass(frozen=True, slots=True)
class Denial:
    reason: DenialReason
    message: str

    @property
    def code(self) -> int:
        """403 for what the user may not do, 400 for what is wrong in the request."""
        return 403 if self.reason in _FORBIDDEN else 400


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    patch: tuple[PatchOperation, ...] = ()
    denial: Denial | None = None
    warnings: tuple[str, ...] = ()
    gpu: bool = False
    """Whether the pod asks for a GPU slice (after sizing)."""

    @property
    def allowed(self) -> bool:
        return self.denial is None


def _deny(reason: DenialReason, error: InputError | str) -> Decision:
    return Decision(Outcome.DENIED, denial=Denial(reason, str(error)))


# ---- JSON pointers ----------------------------------------------------------------------------


def escape_pointer(token: str) -> str:
    """RFC 6901: ``~`` → ``~0``, ``/`` → ``~1`` (``nvidia.com/gpu`` → ``nvidia.com~1gpu``)."""
    return token.replace("~", "~0").replace("/", "~1")


# ---- checks -----------------------------------------------------------------------------------


def is_trusted(user: User, settings: Settings) -> bool:
    trusted = settings.trusted_service_accounts
    return user.username in trusted or any(g in trusted for g in user.groups)


def is_excluded(pod: Pod, settings: Settings) -> bool:
    if pod.namespace in settings.excluded_namespaces:
        return True
    return pod.labels.get(keys.WEBHOOK_IGNORE_LABEL) == keys.WEBHOOK_IGNORE_VALUE


def _protected_changes(new: Mapping[str, str], old: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(k for k in PROTECTED_KEYS if new.get(k) != old.get(k))


def _check_internal_annotations(
    pod: Pod, old: Pod | None, user: User, settings: Settings
) -> Decision | None:
    changed = _protected_changes(pod.annotations or {}, (old.annotations or {}) if old else {})
    if not changed or is_trusted(user, settings):
        return None
    key = changed[0]
    value = (pod.annotations or {}).get(key)
    action = "carries" if old is None else ("removes" if value is None else "changes")
    error = InvalidRequestError(
        f"pod {pod.display_name}: metadata.annotations[{key}]",
        value if value is not None else "<removed>",
        f"the request {action} an internal annotation, which only Kantaloupe's own service "
        f"accounts may write, and user {user.username!r} is not one of them",
        "remove the annotation from the manifest: the scheduler records device allocations "
        "itself (operators: list the writer in --trusted-service-accounts)",
    )
    return _deny(DenialReason.INTERNAL_ANNOTATION, error)


def _spec(container: Container) -> requests.ContainerSpec:
    return requests.ContainerSpec(
        name=container.name, limits=container.limits or {}, requests=container.requests or {}
    )


def _gpu_keys(container: Container) -> frozenset[str]:
    present = {*(container.limits or {}), *(container.requests or {})}
    return frozenset(r for r in resources.ALL if r in present)


def _asks_gpu(container: Container) -> bool:
    return bool(_gpu_keys(container))


# ---- sizing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sizing:
    fills: Mapping[int, Mapping[str, str]]
    """App container index → resources to add."""
    record: str
    warning: str


def _sizing_targets(pod: Pod) -> tuple[int, ...] | str:
    """App containers the ``kantaloupe.io/llm`` size goes to, or a reason there is none."""
    asking = [i for i, c in enumerate(pod.containers) if _asks_gpu(c)]
    if not asking:
        if len(pod.containers) == 1:
            return (0,)
        return (
            "the pod has several containers and none asks for a GPU, so it is unclear which "
            "one serves the model"
        )
    memory = {resources.GPU_MEMORY, resources.GPU_MEMORY_PERCENTAGE}
    return tuple(i for i in asking if not _gpu_keys(pod.containers[i]) & memory)


def _size(pod: Pod, text: str, fleet: Sequence[GpuModel]) -> _Sizing | Decision | None:
    targets = _sizing_targets(pod)
    if isinstance(targets, str):
        return _deny(
            DenialReason.SIZING_INVALID,
            InvalidRequestError(
                keys.LLM,
                text,
                targets,
                f'add {resources.GPU}: "1" to the limits of the container that serves the model',
            ),
        )
    if not targets:
        return None  # every GPU container set its memory itself: the user's numbers win
    try:
        decision = decide_from_annotation(text, fleet)
    except InvalidRequestError as e:
        reason = DenialReason.SIZING_INVALID
        if fleet:
            try:
                decide_from_annotation(text, ())
            except InvalidRequestError:
                pass
            else:
                reason = DenialReason.SIZING_NO_FIT
        return _deny(reason, e)
    fills: dict[int, dict[str, str]] = {}
    for i in targets:
        fill = {resources.GPU_MEMORY: str(decision.gpumem_mib)}
        if resources.GPU not in _gpu_keys(pod.containers[i]):
            fill[resources.GPU] = str(decision.gpus)
        fills[i] = fill
    names = ", ".join(repr(pod.containers[i].name) for i in targets)
    fits = ", ".join(decision.record.fits) or "not checked: no GPU models registered"
    warning = (
        f"{keys.LLM}: set {resources.GPU_MEMORY}={decision.gpumem_mib} (MiB per GPU, "
        f"{decision.gpus} GPU(s)) on container {names} for {decision.record.model}; "
        f"fits: {fits}; see {keys.SIZING}"
    )
    return _Sizing(fills, sizing_codec.encode_sizing(decision.record), warning)


# ---- the decision -----------------------------------------------------------------------------


def decide(
    operation: Operation,
    pod: Pod,
    user: User,
    settings: Settings,
    *,
    old: Pod | None = None,
    fleet: Sequence[GpuModel] = (),
) -> Decision:
    """Admit, mutate or refuse one pod. ``old`` is the stored pod on UPDATE.

    ``fleet`` is the cluster's GPU models; when empty, LLM sizing never refuses for fit.
    """
    if operation not in (Operation.CREATE, Operation.UPDATE):
        return Decision(Outcome.ALLOWED)
    if (denied := _check_internal_annotations(pod, old, user, settings)) is not None:
        return denied
    if operation is Operation.UPDATE:
        return Decision(Outcome.ALLOWED)
    if is_excluded(pod, settings):
        return Decision(Outcome.SKIPPED)
    annotations = pod.annotations or {}
    try:
        requests.parse_pod(
            pod.uid,
            annotations,
            [_spec(c) for c in pod.containers],
            [_spec(c) for c in pod.init_containers],
        )
    except InvalidRequestError as e:
        return _deny(DenialReason.INVALID_REQUEST, e)

    sized: _Sizing | None = None
    if (text := annotations.get(keys.LLM)) is not None:
        result = _size(pod, text, fleet)
        if isinstance(result, Decision):
            return result
        sized = result

    fills = sized.fills if sized else {}
    if not any(_asks_gpu(c) for c in (*pod.containers, *pod.init_containers)) and not fills:
        return Decision(Outcome.ALLOWED)
    return _mutate_gpu_pod(pod, settings, fills, sized)


def _mutate_gpu_pod(
    pod: Pod,
    settings: Settings,
    fills: Mapping[int, Mapping[str, str]],
    sized: _Sizing | None,
) -> Decision:
    if pod.node_name:
        return _deny(
            DenialReason.NODE_NAME_SET,
            InvalidRequestError(
                f"pod {pod.display_name}: spec.nodeName",
                pod.node_name,
                "is already set on a pod that asks for GPU slices, so no scheduler places it "
                "and no slice would be allocated",
                "remove spec.nodeName; to pin a node, use a nodeSelector on kubernetes.io/hostname",
            ),
        )
    if settings.deny_privileged:
        for kind, group in (
            ("initContainers", pod.init_containers),
            ("containers", pod.containers),
        ):
            for c in group:
                if c.privileged:
                    return _deny(
                        DenialReason.PRIVILEGED,
                        InvalidRequestError(
                            f"pod {pod.display_name}: "
                            f"{kind}[{c.name!r}].securityContext.privileged",
                            True,
                            "a privileged container sees every GPU of the node, so a GPU "
                            "slice cannot be enforced",
                            "drop privileged: true (grant only the capabilities it needs), or "
                            "remove the nvidia.com/* resources from the pod",
                        ),
                    )

    ops: list[PatchOperation] = []
    warnings: list[str] = []
    for kind, group, app in (
        ("initContainers", pod.init_containers, False),
        ("containers", pod.containers, True),
    ):
        for i, c in enumerate(group):
            extra = dict(fills.get(i, {})) if app else {}
            ops += _container_defaults(f"/spec/{kind}/{i}", c, extra)

    scheduler = pod.scheduler_name or ""
    if scheduler in ("", settings.scheduler_name) or (
        scheduler == DEFAULT_SCHEDULER and settings.force_overwrite_default_scheduler
    ):
        if scheduler != settings.scheduler_name:
            ops.append(PatchOperation("add", "/spec/schedulerName", settings.scheduler_name))
    else:
        warnings.append(
            f"pod {pod.display_name} asks for GPU slices but names scheduler {scheduler!r}; "
            f"only {settings.scheduler_name!r} allocates slices, so it will not get one unless "
            "that scheduler does"
        )
    if settings.runtime_class_name and not pod.runtime_class_name:
        ops.append(PatchOperation("add", "/spec/runtimeClassName", settings.runtime_class_name))
    if sized is not None:
        ops.append(_annotation_op(pod, keys.SIZING, sized.record))
        warnings.append(sized.warning)
    outcome = Outcome.MUTATED if ops else Outcome.ALLOWED
    return Decision(
        outcome, tuple(ops), warnings=tuple(shorten(w, _MAX_WARNING) for w in warnings), gpu=True
    )


def _annotation_op(pod: Pod, key: str, value: str) -> PatchOperation:
    if pod.annotations is None:
        return PatchOperation("add", "/metadata/annotations", {key: value})
    return PatchOperation("add", f"/metadata/annotations/{escape_pointer(key)}", value)


def _container_defaults(
    base: str, container: Container, extra: Mapping[str, str]
) -> list[PatchOperation]:
    """Fill HAMi's defaults (and ``extra``) into the container's limits, and requests if any."""
    limits = dict(container.limits or {})
    reqs = dict(container.requests or {})
    effective = requests.ContainerSpec(
        container.name, limits={**limits, **extra}, requests={**reqs, **extra}
    )
    parsed = requests.parse_container(effective)
    if parsed is None:
        return []
    given = _gpu_keys(container)
    add: dict[str, str] = {k: v for k, v in extra.items() if k not in given}
    if resources.GPU not in given and resources.GPU not in add:
        add[resources.GPU] = str(parsed.count)
    if resources.GPU_CORES not in given and parsed.cores == 100:
        add[resources.GPU_CORES] = "100"
    if not add:
        return []
    ops: list[PatchOperation] = []
    if not container.has_resources:
        value: dict[str, object] = {"limits": dict(add)}
        if container.requests is not None:
            value["requests"] = dict(add)
        return [PatchOperation("add", f"{base}/resources", value)]
    targets = [("limits", container.limits)]
    if container.requests is not None:
        targets.append(("requests", container.requests))
    for name, current in targets:
        if current is None:
            ops.append(PatchOperation("add", f"{base}/resources/{name}", dict(add)))
            continue
        for key, v in add.items():
            ops.append(PatchOperation("add", f"{base}/resources/{name}/{escape_pointer(key)}", v))
    return ops


def describe_denial(denial: Denial) -> str:
    """A log-safe one-liner."""
    return f"{denial.reason.value}: {shorten(denial.message)}"
