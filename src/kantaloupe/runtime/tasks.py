"""Owned tasks: every task is named, its failure is logged at once, and a root task's end
(failure or plain return) tells the process to stop, which then exits non-zero."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
RootExit = Callable[[str, BaseException | None], None]


class TaskGuard:
    """Starts and tracks tasks; :meth:`cancel_all` ends them within a bound."""

    def __init__(self, on_root_exit: RootExit | None = None) -> None:
        self._tasks: dict[asyncio.Task[Any], bool] = {}
        self._on_root_exit = on_root_exit
        self.closing = False

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, T], *, root: bool = False
    ) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[task] = root
        task.add_done_callback(self._done)
        return task

    @property
    def tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        root = self._tasks.pop(task, False)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error(
                "task failed",
                extra={"task": task.get_name(), "root": root},
                exc_info=(type(error), error, error.__traceback__),
            )
        elif root and not self.closing:
            log.error("root task ended", extra={"task": task.get_name()})
        if root and not self.closing and self._on_root_exit is not None:
            self._on_root_exit(task.get_name(), error)

    async def cancel_all(self, timeout_s: float = 5.0) -> bool:
        """Cancel every task and wait up to ``timeout_s``; True when all ended."""
        self.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            log.error("task ignored cancellation", extra={"task": task.get_name()})
        return not pending
