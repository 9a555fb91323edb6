"""Watch caches: list, then watch from the list's resourceVersion; relist on 410 Gone.

An :class:`Informer` keeps ``store`` (key → object) and calls ``on_change(old, new)``
synchronously for each change (``old`` None: added; ``new`` None: deleted), so a consumer
updates its own state with no ``await`` in between. After a relist it reports the differences
against the previous store, so deletions missed while disconnected are seen too. ``synced`` is
set after the first full list has been delivered.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Generic, TypeVar

from kantaloupe.kube import errors
from kantaloupe.kube.client import KubeClient
from kantaloupe.kube.objects import ObjectMeta

log = logging.getLogger(__name__)

T = TypeVar("T")
Change = Callable[[T | None, T | None], None]


class Informer(Generic[T]):
    """A list+watch cache of one resource path."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        kind: type[T],
        *,
        meta: Callable[[T], ObjectMeta],
        on_change: Change[T] | None = None,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
        watch_timeout_s: int = 300,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.client = client
        self.path = path
        self.kind = kind
        self.meta = meta
        self.on_change = on_change
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout_s = watch_timeout_s
        self.backoff_max_s = backoff_max_s
        self.store: dict[str, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        """How many full lists were made (1 after the first sync)."""
        self.last_list_s = 0.0
        """Seconds the last list (request and delivery) took."""

    def key(self, obj: T) -> str:
        m = self.meta(obj)
        return f"{m.namespace}/{m.name}" if m.namespace else m.name

    def _emit(self, old: T | None, new: T | None) -> None:
        if self.on_change is not None:
            try:
                self.on_change(old, new)
            except Exception:  # a consumer bug costs one event, not the watch
                log.exception("informer handler failed", extra={"path": self.path})

    async def relist(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        listing = await self.client.list(
            self.path,
            self.kind,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
        )
        fresh: dict[str, T] = {}
        for obj in listing.items:
            fresh[self.key(obj)] = obj
        old_store, self.store = self.store, fresh
        for key, old in old_store.items():
            if key not in fresh:
                self._emit(old, None)
        for key, obj in fresh.items():
            prev = old_store.get(key)
            if prev is None or self.meta(prev).resource_version != self.meta(obj).resource_version:
                self._emit(prev, obj)
        self.resource_version = listing.resource_version
        self.relists += 1
        self.last_list_s = loop.time() - started
        self.synced.set()

    async def _watch_once(self) -> None:
        async for event in self.client.watch(
            self.path,
            self.kind,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_s=self.watch_timeout_s,
        ):
            if event.resource_version:
                self.resource_version = event.resource_version
            if event.type == "BOOKMARK":
                continue
            key = self.key(event.object)
            old = self.store.get(key)
            if event.type == "DELETED":
                self.store.pop(key, None)
                self._emit(old, None)
            else:
                self.store[key] = event.object
                self._emit(old, event.object)

    async def run(self) -> None:
        """List and watch forever; transient failures back off (jittered, capped)."""
        delay = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                await self._watch_once()
                delay = 0.2
            except errors.GoneError:
                log.info("watch expired; relisting", extra={"path": self.path})
                need_list = True
            except (errors.TransportError, errors.ServerError, errors.TooManyRequestsError) as e:
                log.warning("watch failed; retrying", extra={"path": self.path, "error": str(e)})
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)
            except errors.KubeError as e:
                log.error("watch refused; retrying", extra={"path": self.path, "error": str(e)})
                need_list = True
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)
