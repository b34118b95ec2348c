"""Messages published and not yet received: when one looks lost, and how full a queue is.

A worker receives an execution by taking it over (``Storage.take_over`` sets
``started_at`` and moves the owner): that compare-and-set is the receipt, and the only
one. :class:`Unreceived` is the dispatcher's list of the messages it published whose
executions it has not yet seen taken over, with when to look at each again. A message
is judged lost, and its execution published again under a new task id, when:

* ``receive_timeout`` has passed since it was published and the queue it went to holds
  no message ready for a worker (it is not waiting behind others: the broker lost it,
  or a worker holds it without starting it), or the transport cannot say;
* the broker was unreachable and answers again (a restart may have emptied it): it is
  looked at at once, with the same rule about the queue;
* ``dispatch_timeout`` has passed since it was published, whatever the queue holds (a
  queue that never empties could hide a lost message forever);
* publishing it raised, and its execution still waits here: at the next look.

Each copy waits twice as long as the one before it (``receive_timeout`` doubling, up to
``dispatch_timeout``), so a worker that holds messages without starting them costs a
few extra messages per execution, never a storm. Times are ``time.monotonic()``
seconds, handed in by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from kombu.exceptions import OperationalError

from taskmgr.celery.worker import TASK_NAME

__all__ = ["BrokerUnreachableError", "QueueProbe", "Sent", "Unreceived"]

logger = logging.getLogger("taskmgr.dispatch")


@dataclass(frozen=True, slots=True)
class Sent:
    """The latest message published for one execution."""

    task_id: str
    #: The ``queue`` option it was published with (None: the app's routing chose).
    queue: str | None
    #: When it was published.
    at: float
    #: When to look at it again.
    due: float
    #: How many messages were published for the execution, this one included.
    copies: int
    #: Its publish raised: it may never have reached the broker.
    unsent: bool = False


class Unreceived:
    """The messages one dispatcher published whose executions no worker has been seen
    taking over. Thread-safe."""

    def __init__(self, *, receive_timeout: float, dispatch_timeout: float) -> None:
        self.receive_timeout = receive_timeout
        self.dispatch_timeout = dispatch_timeout
        self._lock = threading.Lock()
        self._sent: dict[str, Sent] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def __contains__(self, execution_id: object) -> bool:
        with self._lock:
            return execution_id in self._sent

    def get(self, execution_id: str) -> Sent | None:
        with self._lock:
            return self._sent.get(execution_id)

    def published(self, execution_id: str, task_id: str, queue: str | None, now: float) -> None:
        """The first message for an execution just claimed was published."""
        with self._lock:
            self._sent[execution_id] = Sent(task_id, queue, now, now + self._wait(1), 1)

    def replaced(self, execution_id: str, task_id: str, queue: str | None, now: float) -> None:
        """A message with a new task id replaced the execution's previous one: it waits
        twice as long as the previous one before it is judged."""
        with self._lock:
            previous = self._sent.get(execution_id)
            copies = 1 + (previous.copies if previous is not None else 1)
            self._sent[execution_id] = Sent(task_id, queue, now, now + self._wait(copies), copies)

    def unsent(self, execution_id: str, task_id: str, queue: str | None, now: float) -> None:
        """Publishing the execution's message raised, and it is still waiting here: it
        is published again at the next look, whatever its queue holds."""
        with self._lock:
            previous = self._sent.get(execution_id)
            copies = previous.copies if previous is not None else 1
            self._sent[execution_id] = Sent(task_id, queue, now, now, copies, unsent=True)

    def broker_back(self, now: float) -> int:
        """The broker answers again after failing: every message published before may
        have died with it, so each is looked at at once. Returns how many."""
        with self._lock:
            earlier = {k: s for k, s in self._sent.items() if s.at < now and s.due > now}
            for execution_id, sent in earlier.items():
                self._sent[execution_id] = replace(sent, due=now)
            return len(earlier)

    def due(self, now: float) -> dict[str, Sent]:
        """The messages to look at now."""
        with self._lock:
            return {k: s for k, s in self._sent.items() if s.due <= now}

    def queues(self) -> set[str | None]:
        """The queue options of the messages still waiting to be received."""
        with self._lock:
            return {s.queue for s in self._sent.values()}

    def lost(self, sent: Sent, waiting: int | None, now: float) -> bool:
        """Whether a due message looks lost, given how many messages are ``waiting``
        in its queue (None: unknown)."""
        return sent.unsent or not waiting or now - sent.at >= self.dispatch_timeout

    def keep(self, waiting: Iterable[str], *, published_before: float) -> None:
        """Forget the messages published before ``published_before`` whose executions are
        not among those still ``waiting`` for a worker (taken over, ended or released
        meanwhile). Later ones are kept: the list of waiting ones was read before they
        were recorded."""
        still = set(waiting)
        with self._lock:
            self._sent = {
                k: s for k, s in self._sent.items() if k in still or s.at >= published_before
            }

    def forget(self, execution_ids: Iterable[str]) -> None:
        with self._lock:
            for execution_id in execution_ids:
                self._sent.pop(execution_id, None)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def _wait(self, copies: int) -> float:
        return min(self.receive_timeout * 2.0 ** (copies - 1), self.dispatch_timeout)


class BrokerUnreachableError(Exception):
    """The broker did not answer (a connection error)."""


class QueueProbe:
    """Counts the messages ready for a worker in the queues taskmgr's messages go to,
    over a broker connection of its own (never the publishers' pool). Used by one
    thread at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._names: dict[str | None, str | None] = {}
        self._connection: Any = None
        self._channel: Any = None

    def queue_name(self, queue: str | None) -> str | None:
        """The broker queue a message published with this ``queue`` option goes to
        (without one, the app's routing decides); None when the routing names no queue
        (an exchange and routing key only)."""
        if queue not in self._names:
            name: str | None = None
            try:
                route = self.app.amqp.router.route({"queue": queue} if queue else {}, TASK_NAME)
                found = route.get("queue")
                name = found if isinstance(found, str) else getattr(found, "name", None)
            except Exception:
                logger.debug("cannot tell which queue %r routes to", queue, exc_info=True)
            self._names[queue] = name or None
        return self._names[queue]

    def waiting(self, queues: Iterable[str | None]) -> dict[str | None, int | None]:
        """Per ``queue`` option, the messages in its queue that no worker has reserved
        yet: 0 for a queue the broker does not have, None where it cannot be told.

        :raises BrokerUnreachableError: the broker does not answer.
        """
        names = {queue: self.queue_name(queue) for queue in queues}
        counts = self.count({name for name in names.values() if name is not None})
        return {queue: None if name is None else counts[name] for queue, name in names.items()}

    def count(self, names: Iterable[str]) -> dict[str, int | None]:
        """Per queue name, the messages in it that no worker has reserved yet: 0 for a
        queue the broker does not have, None where the transport cannot count them.

        :raises BrokerUnreachableError: the broker does not answer.
        """
        if self._connection is None:
            self._connection = self.app.connection_for_write()
        connection = self._connection
        counts: dict[str, int | None] = {}
        for name in names:
            try:
                if self._channel is None:
                    # one try: the dispatcher looks again in a moment
                    connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
                    self._channel = connection.channel()
                declared = self._channel.queue_declare(queue=name, passive=True)
                counts[name] = int(declared.message_count)
            except (OperationalError, *connection.connection_errors) as exc:
                self.close()
                raise BrokerUnreachableError(f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                # a passive declare of a missing queue closes the channel on AMQP
                self._drop_channel()
                # kombu's in-process transports say '404', AMQP says 404: no such queue,
                # so nothing waits in it (Redis drops an emptied list)
                missing = str(getattr(exc, "reply_code", "")) == "404"
                counts[name] = 0 if missing else None
        return counts

    def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):  # already closed by the broker
                channel.close()

    def close(self) -> None:
        self._drop_channel()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # the broker is gone: nothing to close
                connection.release()
