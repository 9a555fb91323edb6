"""The one door to the API server: config loading, raw-JSON requests, list, watch, patch, bind.

``kubernetes_asyncio`` loads the configuration (kubeconfig or in-cluster, token refresh);
requests go through one ``aiohttp`` session built from that configuration and return raw bytes,
which callers decode with ``msgspec`` into the slim Structs of :mod:`kantaloupe.kube.objects`.
The library's typed models are not used: on a 50,000-pod list they cost several times the time
and memory (``docs/kube-client.md``).

Every failure is one of :mod:`kantaloupe.kube.errors`. Usage::

    client = await KubeClient.connect(kubeconfig)          # None: in-cluster, then ~/.kube/config
    pod = await client.get(pod_path("ns", "p"), Pod)
    async for event in client.watch(pods_path(), Pod, resource_version=rv):
        ...
    await client.close()
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from kantaloupe.kube import errors
from kantaloupe.kube.objects import ObjectList

log = logging.getLogger(__name__)

T = TypeVar("T")

PatchKind = Literal["merge", "strategic", "json"]
_PATCH_TYPES: Final[dict[str, str]] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_ENCODER: Final = msgspec.json.Encoder()
_DECODERS: dict[object, msgspec.json.Decoder[Any]] = {}
_READ_CHUNK: Final = 1 << 16


def decoder_for(kind: type[T]) -> msgspec.json.Decoder[T]:
    """A cached ``msgspec`` JSON decoder for ``kind``."""
    found = _DECODERS.get(kind)
    if found is None:
        found = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return found


# -- paths -------------------------------------------------------------------------------------


def _seg(text: str) -> str:
    return quote(text, safe="")


def pods_path(namespace: str | None = None) -> str:
    return f"/api/v1/namespaces/{_seg(namespace)}/pods" if namespace else "/api/v1/pods"


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{_seg(namespace)}/pods/{_seg(name)}"


def nodes_path() -> str:
    return "/api/v1/nodes"


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{_seg(name)}"


def leases_path(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{_seg(namespace)}/leases"


def lease_path(namespace: str, name: str) -> str:
    return f"{leases_path(namespace)}/{_seg(name)}"


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{_seg(namespace)}/events"


def namespaces_path() -> str:
    return "/api/v1/namespaces"


# -- results -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A full list and the resourceVersion to watch from."""

    items: list[T]
    resource_version: str


EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    type: EventType
    object: T
    resource_version: str
    """The event object's resourceVersion (bookmarks carry only this)."""


class _RawEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _RvOnly(msgspec.Struct):
    class _Meta(msgspec.Struct, rename="camel"):
        resource_version: str = ""

    metadata: _Meta = msgspec.field(default_factory=_Meta)


_EVENT_DECODER: Final = msgspec.json.Decoder(_RawEvent)
_RV_DECODER: Final = msgspec.json.Decoder(_RvOnly)


# -- configuration ------------------------------------------------------------------------------


async def load_configuration(
    kubeconfig: str | Path | None = None, *, context: str | None = None
) -> Any:
    """A ``kubernetes_asyncio`` Configuration: ``kubeconfig`` if given, else in-cluster when
    running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            await k8s_config.load_kube_config(
                config_file=str(kubeconfig), context=context, client_configuration=cfg
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(context=context, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError) as e:
        from kantaloupe.api.errors import InvalidConfigError

        raise InvalidConfigError(
            "kubeconfig",
            str(kubeconfig) if kubeconfig else "(in-cluster / default)",
            f"cannot be loaded ({e})",
            "pass --kubeconfig with a readable kubeconfig, or run in a pod with a service account",
        ) from e
    return cfg


def _ssl_context(cfg: Any) -> ssl.SSLContext | bool:
    if str(cfg.host).startswith("http://"):
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- the client ---------------------------------------------------------------------------------


class KubeClient:
    """Raw-JSON access to one API server over one connection pool.

    ``timeout_s`` bounds each ordinary request; watches use their own server-side timeout.
    """

    def __init__(
        self,
        configuration: Any,
        *,
        timeout_s: float = 30.0,
        max_connections: int = 64,
        user_agent: str = "kantaloupe",
    ) -> None:
        self.configuration = configuration
        self.host: str = str(configuration.host).rstrip("/")
        self.timeout_s = timeout_s
        connector = aiohttp.TCPConnector(limit=max_connections, ssl=_ssl_context(configuration))
        self._session = aiohttp.ClientSession(
            connector=connector,
            read_bufsize=1 << 21,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )
        self._server_hostname: str | None = getattr(configuration, "tls_server_name", None)

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | Path | None = None,
        *,
        context: str | None = None,
        timeout_s: float = 30.0,
        user_agent: str = "kantaloupe",
    ) -> KubeClient:
        cfg = await load_configuration(kubeconfig, context=context)
        return cls(cfg, timeout_s=timeout_s, user_agent=user_agent)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        auth = await self.configuration.auth_settings()
        token = auth.get("BearerToken")
        if token:
            headers[token["key"]] = token["value"]
        return headers

    def _url(self, path: str, params: Mapping[str, str | int | bool] | None) -> str:
        if not params:
            return self.host + path
        clean = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
        return f"{self.host}{path}?{urlencode(clean)}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
        what: str = "",
    ) -> bytes:
        """Send one request; the raw body of a 2xx answer, else a :class:`KubeError`."""
        data = None if body is None else body if isinstance(body, bytes) else _ENCODER.encode(body)
        what = what or f"{method} {path}"
        try:
            async with self._session.request(
                method,
                self._url(path, params),
                data=data,
                headers=await self._headers(content_type if data is not None else None),
                timeout=aiohttp.ClientTimeout(total=timeout_s or self.timeout_s),
                server_hostname=self._server_hostname,
            ) as resp:
                raw = await resp.read()
                if not 200 <= resp.status < 300:
                    raise errors.from_response(resp.status, raw, what=what)
                return raw
        except (aiohttp.ClientError, TimeoutError) as e:
            raise errors.TransportError(
                0, "Transport", f"{type(e).__name__}: {e}", what=what
            ) from e

    # -- typed helpers ---------------------------------------------------------------------------

    async def get(self, path: str, kind: type[T]) -> T:
        return decoder_for(kind).decode(await self.request("GET", path))

    async def get_or_none(self, path: str, kind: type[T]) -> T | None:
        try:
            return await self.get(path, kind)
        except errors.NotFoundError:
            return None

    async def create(self, path: str, body: object, kind: type[T]) -> T:
        return decoder_for(kind).decode(await self.request("POST", path, body=body))

    async def replace(self, path: str, body: object, kind: type[T]) -> T:
        return decoder_for(kind).decode(await self.request("PUT", path, body=body))

    async def patch(
        self, path: str, patch: object, kind: type[T], *, strategy: PatchKind = "merge"
    ) -> T:
        raw = await self.request("PATCH", path, body=patch, content_type=_PATCH_TYPES[strategy])
        return decoder_for(kind).decode(raw)

    async def delete(self, path: str, *, grace_period_s: int | None = None) -> None:
        params = {} if grace_period_s is None else {"gracePeriodSeconds": grace_period_s}
        await self.request("DELETE", path, params=params)

    async def patch_annotations(
        self,
        path: str,
        annotations: Mapping[str, str | None],
        kind: type[T],
        *,
        resource_version: str | None = None,
    ) -> T:
        """JSON merge patch of ``metadata.annotations`` (``None`` deletes a key).

        With ``resource_version`` the write fails with :class:`ConflictError` if the object
        changed since it was read (optimistic concurrency).
        """
        meta: dict[str, object] = {"annotations": dict(annotations)}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return await self.patch(path, {"metadata": meta}, kind, strategy="merge")

    async def bind_pod(self, namespace: str, name: str, uid: str, node: str) -> None:
        """Create the pod's Binding to ``node``; ``uid`` guards against a recreated namesake."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.request(
            "POST", pod_path(namespace, name) + "/binding", body=body, what=f"bind {name}"
        )

    # -- list and watch --------------------------------------------------------------------------

    async def list(
        self,
        path: str,
        kind: type[T],
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 0,
    ) -> Listing[T]:
        """Every object at ``path`` (paged by ``page_size`` when above 0)."""
        decoder = decoder_for(ObjectList[kind])  # type: ignore[valid-type]
        items: list[T] = []
        cont = ""
        while True:
            params: dict[str, str | int | bool] = {}
            if label_selector:
                params["labelSelector"] = label_selector
            if field_selector:
                params["fieldSelector"] = field_selector
            if page_size:
                params["limit"] = page_size
            if cont:
                params["continue"] = cont
            raw = await self.request("GET", path, params=params, timeout_s=max(self.timeout_s, 120))
            page = decoder.decode(raw)
            items.extend(page.items)
            cont = page.metadata.continue_
            if not cont:
                return Listing(items, page.metadata.resource_version)

    async def watch(
        self,
        path: str,
        kind: type[T],
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        timeout_s: int = 300,
    ) -> AsyncIterator[WatchEvent[T]]:
        """Events after ``resource_version`` until the server ends the watch (``timeout_s``).

        Raises :class:`GoneError` when the version is too old (relist), other
        :class:`KubeError` subclasses on failures. Bookmarks are requested and yielded.
        """
        params: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_s,
        }
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        decoder = decoder_for(kind)
        what = f"watch {path}"
        try:
            async with self._session.get(
                self._url(path, params),
                headers=await self._headers(None),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout_s, sock_read=timeout_s + 30
                ),
                server_hostname=self._server_hostname,
            ) as resp:
                if resp.status != 200:
                    raise errors.from_response(resp.status, await resp.read(), what=what)
                buffer = b""
                async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                    buffer += chunk
                    if b"\n" not in chunk:
                        continue
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _decode_event(line, decoder, what)
                if buffer.strip():
                    yield _decode_event(buffer, decoder, what)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise errors.TransportError(
                0, "Transport", f"{type(e).__name__}: {e}", what=what
            ) from e


def _transport(e: BaseException, what: str) -> errors.TransportError:
    return errors.TransportError(0, "Transport", f"{type(e).__name__}: {e}", what=what)


def _decode_event(line: bytes, decoder: msgspec.json.Decoder[T], what: str) -> WatchEvent[T]:
    try:
        raw = _EVENT_DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise errors.ServerError(0, "BadWatchEvent", str(e), what=what) from e
    if raw.type == "ERROR":
        raise errors.from_status_object(bytes(raw.object), what=what)
    if raw.type not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise errors.ServerError(0, "BadWatchEvent", f"unknown event type {raw.type!r}", what=what)
    rv = _RV_DECODER.decode(raw.object).metadata.resource_version
    if raw.type == "BOOKMARK":  # carries only a resourceVersion (spec.containers is null)
        return WatchEvent("BOOKMARK", None, rv)  # type: ignore[arg-type]
    try:
        obj = decoder.decode(raw.object)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise errors.InvalidError(0, "BadWatchObject", str(e), what=what) from e
    return WatchEvent(raw.type, obj, rv)  # type: ignore[arg-type]
