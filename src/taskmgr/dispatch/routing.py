"""A service's dispatchers by name, and which one runs each job.

A service has a default dispatcher and may have others, each under a name; a job
chooses one with its ``dispatch`` option (``"celery"``, ``"inline"``, any name the
service was given), else it runs on the default. :class:`DispatchRouter` is that set
seen as one :class:`~taskmgr.dispatch.Dispatcher`: it starts and stops each dispatcher
once and hands each claimed execution to the one its job chooses. :class:`Budget`
bounds one claim by what each of them can take, so a full pool holds back the jobs
that run on it, never the others.

``inline`` always names a dispatcher: the one given under that name, else the
in-process pool of a dispatcher that has one (``CeleryDispatcher``'s), else an
:class:`~taskmgr.dispatch.InlineDispatcher` of the router's own. A job whose
``queue`` is ``"inline"`` and that chooses no dispatcher runs there: the older way to
keep one job in the scheduler's process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from taskmgr.core.models import DISPATCH_NAME_PATTERN, Job
from taskmgr.dispatch.base import DispatchContext, Dispatcher, Runtime
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.exceptions import InvalidInputError, ServiceStateError, UnknownDispatcherError
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Claimed

__all__ = ["INLINE", "INLINE_QUEUE", "Budget", "DispatchRouter", "check_dispatcher_name"]

logger = logging.getLogger("taskmgr.dispatch")

#: The name of the dispatcher that runs jobs in the service's own process.
INLINE = "inline"
#: A job whose ``queue`` is this (and that chooses no dispatcher) runs inline: the
#: older form of ``dispatch="inline"``.
INLINE_QUEUE = "inline"


def check_dispatcher_name(name: object, *, field: str = "dispatchers") -> str:
    """``name`` if it can name a dispatcher (what a job's ``dispatch`` accepts).

    :raises InvalidInputError: it cannot.
    """
    if not isinstance(name, str) or DISPATCH_NAME_PATTERN.fullmatch(name) is None:
        raise InvalidInputError(
            f"a dispatcher's name must match {DISPATCH_NAME_PATTERN.pattern}, got {name!r}",
            field=field,
        )
    return name


class DispatchRouter(Dispatcher):
    """The dispatchers of one service, by name, as one dispatcher.

    :param default: the name of the dispatcher of the jobs that choose none.
    :param dispatchers: the dispatchers by name; ``default`` must be one of them.
    """

    def __init__(self, default: str, dispatchers: Mapping[str, Dispatcher]) -> None:
        named = dict(dispatchers)
        # the pools a dispatcher runs itself (CeleryDispatcher's inline one): reachable
        # by name, started and stopped by their owner only
        members: list[Dispatcher] = []
        for dispatcher in list(named.values()):
            for name, member in dispatcher.members().items():
                members.append(member)
                named.setdefault(name, member)
        named.setdefault(INLINE, InlineDispatcher())
        if default not in named:
            raise UnknownDispatcherError(
                f"names none of the dispatchers ({', '.join(sorted(named))})", field="dispatcher"
            )
        self.default = default
        #: Every dispatcher a job can choose, by name (the default included).
        self.dispatchers: Mapping[str, Dispatcher] = MappingProxyType(named)
        # each started and stopped once, the default first, none that another one runs
        self._own = _distinct(
            d
            for d in (named[default], *named.values())
            if not any(d is member for member in members)
        )
        self._distinct = _distinct(named.values())
        self._context: DispatchContext | None = None

    # -- which dispatcher ------------------------------------------------------------

    def route(self, job: Job) -> str:
        """The name of the dispatcher that runs ``job``'s executions."""
        if job.dispatch is not None:
            return job.dispatch
        if job.queue == INLINE_QUEUE:
            return INLINE
        return self.default

    def check(self, name: str | None, *, key: str | None = None) -> None:
        """:raises UnknownDispatcherError: ``name`` (a job's ``dispatch``) is not one of
        the service's dispatchers."""
        if name is not None and name not in self.dispatchers:
            job = f"job {key!r}: " if key is not None else ""
            raise UnknownDispatcherError(
                f"{job}no dispatcher is named {name!r}; this service has "
                f"{', '.join(sorted(self.dispatchers))} (pass the others to "
                "SchedulerService(dispatchers={...}))"
            )

    def capacities(self) -> dict[str, int]:
        """How many more executions each named dispatcher can take now."""
        found = {id(d): d.capacity() for d in self._distinct}
        return {name: found[id(d)] for name, d in self.dispatchers.items()}

    # -- the Dispatcher port ---------------------------------------------------------

    def bind(self, runtime: Runtime) -> None:
        for dispatcher in self._own:
            dispatcher.bind(runtime)

    def start(self, context: DispatchContext) -> None:
        started: list[Dispatcher] = []
        try:
            for dispatcher in self._own:
                dispatcher.start(context)
                started.append(dispatcher)
        except BaseException:
            for dispatcher in reversed(started):
                try:
                    dispatcher.shutdown(wait=False)
                except Exception:
                    logger.exception("could not stop %s after a failed start", dispatcher)
            raise
        self._context = context

    def capacity(self) -> int:
        return sum(d.capacity() for d in self._distinct)

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        for name, items in self._grouped(claimed).items():
            dispatcher = self.dispatchers.get(name)
            if dispatcher is None:
                self._refuse(name, items)
            else:
                dispatcher.dispatch(items)

    def prepare(self, claimed: Sequence[Claimed]) -> None:
        for name, items in self._grouped(claimed).items():
            dispatcher = self.dispatchers.get(name)
            if dispatcher is not None:  # refused when dispatched
                dispatcher.prepare(items)

    def _grouped(self, claimed: Sequence[Claimed]) -> dict[str, list[Claimed]]:
        groups: dict[str, list[Claimed]] = {}
        for item in claimed:
            groups.setdefault(self.route(item.job), []).append(item)
        return groups

    def _refuse(self, name: str, items: Sequence[Claimed]) -> None:
        """Executions of jobs that choose a dispatcher this process has not (changed by
        another process, or a dispatcher removed from the code): failed, never silent,
        retried by the job's policy (perhaps by an instance that has it)."""
        context = self._context
        if context is None:
            raise ServiceStateError("DispatchRouter.start() was not called")
        for item in items:
            run = ExecutionRun(item, context.owner, context.clock)
            error = UnknownDispatcherError(
                f"job {item.job.key!r} chooses the dispatcher {name!r}, which this "
                f"instance does not have ({', '.join(sorted(self.dispatchers))})"
            )
            logger.error("%s", error, extra={"taskmgr_job_key": item.job.key})
            context.report(run.failed(error))

    def shutdown(self, *, wait: bool = True) -> None:
        failure: BaseException | None = None
        for dispatcher in reversed(self._own):
            try:
                dispatcher.shutdown(wait=wait)
            except Exception as exc:  # the others still stop
                logger.exception("could not stop %s", dispatcher)
                failure = failure or exc
        if failure is not None:
            raise failure


class Budget:
    """What each dispatcher can still take during one claim: the planner leaves the
    work of a full dispatcher due (it is claimed once that dispatcher has room)."""

    def __init__(self, router: DispatchRouter) -> None:
        self.route = router.route
        self._left = router.capacities()

    def has_room(self, job: Job) -> bool:
        """Whether the dispatcher of ``job`` can take one more execution (one this
        process does not have fails at once, so it is never held back)."""
        left = self._left.get(self.route(job))
        return left is None or left > 0

    def take(self, job: Job, count: int = 1) -> None:
        name = self.route(job)
        if name in self._left:
            self._left[name] -= count


def _distinct(dispatchers: Iterable[Dispatcher]) -> list[Dispatcher]:
    """Each dispatcher once (by identity), in order."""
    seen: list[Dispatcher] = []
    for dispatcher in dispatchers:
        if not any(dispatcher is other for other in seen):
            seen.append(dispatcher)
    return seen
