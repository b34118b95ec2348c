"""Errors raised by taskmgr.

Every error is a :class:`TaskmgrError`, so ``except TaskmgrError`` catches them all.
Where a builtin exception is the natural reading, it is a mixin too, so code that
catches ``ValueError``, ``LookupError`` or ``TypeError`` keeps working::

    TaskmgrError
    ├── InvalidInputError (ValueError)          bad input, refused before anything is written
    │   ├── InvalidJobKeyError
    │   ├── InvalidTriggerError
    │   │   ├── InvalidCronError
    │   │   ├── InvalidTimezoneError
    │   │   ├── InvalidIntervalError
    │   │   └── InvalidDatetimeError
    │   ├── InvalidPolicyError                  overlap/misfire/retry/timeout options
    │   │   └── InvalidAlertError               an alert threshold that is not > 0
    │   ├── InvalidKwargsError                  kwargs that are not plain JSON
    │   ├── DatabaseURLError                    a database URL taskmgr cannot connect with
    │   ├── InvalidFunctionError (TypeError)    lambdas, closures, bound methods, partials
    │   ├── UnknownDispatcherError              a job chooses a dispatcher the service has not
    │   ├── InvalidWebhookError                 an alert webhook URL that is not http(s)
    │   ├── PauseUntilPastError                 a pause's ``until`` is not in the future
    │   ├── InvalidWindowError                  a maintenance window that cannot be kept
    │   │   ├── WindowInPastError               a one-off window already over
    │   │   ├── WindowOverlapError              it overlaps a window of the same scope
    │   │   └── WindowJobNotFoundError          it names a job that does not exist
    │   └── InvalidBackfillError                a backfill's range is empty or not in the past
    │       └── BackfillTooLargeError           it holds more slots than ``max_runs``
    ├── NotFoundError (LookupError)
    │   ├── JobNotFoundError
    │   ├── ExecutionNotFoundError
    │   ├── WindowNotFoundError
    │   └── FunctionNotRegisteredError          a job names a function this process does not know
    ├── ConflictError
    │   ├── JobExistsError
    │   ├── WindowExistsError
    │   ├── FunctionAlreadyRegisteredError
    │   ├── JobBusyError                        the overlap policy refused a manual run
    │   ├── JobPausedError / JobOrphanedError   the job cannot run in its current state
    │   └── VersionConflictError                optimistic update lost a race
    ├── StorageError                            the database failed; the driver error is chained
    │   ├── DataRejectedError                   it refused a value: retrying fails the same way
    │   └── SchemaError                         the schema does not match this taskmgr
    │       ├── SchemaBehindError               older than the code: run `taskmgr db upgrade`
    │       └── SchemaAheadError                migrated by a newer taskmgr
    └── ServiceStateError (RuntimeError)        e.g. an operation that needs a started service
"""

from __future__ import annotations

__all__ = [
    "BackfillTooLargeError",
    "ConflictError",
    "DataRejectedError",
    "DatabaseURLError",
    "ExecutionNotFoundError",
    "FunctionAlreadyRegisteredError",
    "FunctionNotRegisteredError",
    "InvalidAlertError",
    "InvalidBackfillError",
    "InvalidCronError",
    "InvalidDatetimeError",
    "InvalidFunctionError",
    "InvalidInputError",
    "InvalidIntervalError",
    "InvalidJobKeyError",
    "InvalidKwargsError",
    "InvalidPolicyError",
    "InvalidTimezoneError",
    "InvalidTriggerError",
    "InvalidWebhookError",
    "JobBusyError",
    "JobExistsError",
    "JobNotFoundError",
    "JobOrphanedError",
    "JobPausedError",
    "NotFoundError",
    "PauseUntilPastError",
    "SchemaAheadError",
    "SchemaBehindError",
    "SchemaError",
    "ServiceStateError",
    "StorageError",
    "TaskmgrError",
    "TransactionTimedOutError",
    "UnknownDispatcherError",
    "VersionConflictError",
    "WindowExistsError",
    "WindowInPastError",
    "WindowJobNotFoundError",
    "WindowNotFoundError",
    "WindowOverlapError",
]


class TaskmgrError(Exception):
    """A taskmgr operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


# -- bad input ---------------------------------------------------------------


class InvalidInputError(TaskmgrError, ValueError):
    """The input is invalid.

    ``field`` names the offending field (``"cron.minute"``, ``"interval"``, ``"kwargs.x"``)
    so an HTTP layer can point at it; the message always names it too.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidJobKeyError(InvalidInputError):
    """The job key does not match ``^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$``."""


class InvalidTriggerError(InvalidInputError):
    """The trigger is invalid (wrong shape, or not exactly one trigger given)."""


class InvalidCronError(InvalidTriggerError):
    """The cron expression is invalid or never fires."""


class InvalidTimezoneError(InvalidTriggerError):
    """The time zone is not a known IANA zone name."""


class InvalidIntervalError(InvalidTriggerError):
    """The interval is zero, negative, not finite or too large."""


class InvalidDatetimeError(InvalidTriggerError):
    """A datetime is naive (has no time zone) or out of range."""


class InvalidPolicyError(InvalidInputError):
    """A job option (overlap, misfire, retry, timeout, instances) is out of range."""


class InvalidAlertError(InvalidPolicyError):
    """An alert threshold (``alert_late_after``, ``alert_failures``,
    ``alert_max_runtime``, ``alert_no_success_within``) is not a positive number of
    seconds (or runs) within its bound."""


class InvalidWebhookError(InvalidInputError):
    """The alert webhook's URL is not an ``http://`` or ``https://`` URL with a host (or
    its secret is not a string)."""

    def __init__(self, message: str, *, field: str | None = "webhook_url") -> None:
        super().__init__(message, field=field)


class InvalidKwargsError(InvalidInputError):
    """The kwargs are not a JSON object of plain JSON values."""


class DatabaseURLError(InvalidInputError):
    """The database URL names a driver or an option taskmgr cannot use (an async
    driver's option with no equivalent for the matching sync driver, a database other
    than SQLite and PostgreSQL); refused before anything connects."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="database_url")


class InvalidFunctionError(InvalidInputError, TypeError):
    """The function cannot be scheduled: only module-level functions can be."""


class UnknownDispatcherError(InvalidInputError):
    """A job chooses a dispatcher (``dispatch=``) the service was not given."""

    def __init__(self, message: str, *, field: str | None = "dispatch") -> None:
        super().__init__(message, field=field)


class PauseUntilPastError(InvalidInputError):
    """A pause's ``until`` is not in the future: a pause must end after it begins."""

    def __init__(self, message: str, *, field: str | None = "until") -> None:
        super().__init__(message, field=field)


class InvalidWindowError(InvalidInputError):
    """A maintenance window cannot be kept: its end is not after its start, it is both
    or neither one-off and recurring, its duration is not positive or is longer than
    the time between two of its starts."""


class WindowInPastError(InvalidWindowError):
    """A one-off maintenance window is already over: its ``end`` is not in the future."""

    def __init__(self, message: str, *, field: str | None = "end") -> None:
        super().__init__(message, field=field)


class WindowOverlapError(InvalidWindowError):
    """A maintenance window overlaps another of the same scope (the same job, or both
    service-wide)."""


class WindowJobNotFoundError(InvalidWindowError):
    """A maintenance window names a job that does not exist."""

    def __init__(self, message: str, *, field: str | None = "job_key") -> None:
        super().__init__(message, field=field)


class InvalidBackfillError(InvalidInputError):
    """A backfill's range cannot be filled: it is empty (``start`` not before ``end``),
    it reaches into the future, or the job has no schedule."""


class BackfillTooLargeError(InvalidBackfillError):
    """A backfill's range holds more slots than its ``max_runs``."""

    def __init__(self, message: str, *, field: str | None = "max_runs") -> None:
        super().__init__(message, field=field)


# -- lookups -----------------------------------------------------------------


class NotFoundError(TaskmgrError, LookupError):
    """The requested object does not exist."""


class JobNotFoundError(NotFoundError):
    """No job has this key."""

    def __init__(self, job_key: str) -> None:
        self.job_key = job_key
        super().__init__(f"no job with key {job_key!r}")


class ExecutionNotFoundError(NotFoundError):
    """No execution has this id."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution with id {execution_id!r}")


class FunctionNotRegisteredError(NotFoundError):
    """The job names a function that is not registered with this service."""

    def __init__(self, func: str) -> None:
        self.func = func
        super().__init__(
            f"function {func!r} is not registered: only functions handed to the service "
            "in code (SchedulerService(jobs=...) or service.register(...)) can run"
        )


class WindowNotFoundError(NotFoundError):
    """No maintenance window has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no maintenance window named {name!r}")


# -- conflicts ---------------------------------------------------------------


class ConflictError(TaskmgrError):
    """The operation conflicts with the current state."""


class JobExistsError(ConflictError):
    """A job with this key already exists."""

    def __init__(self, job_key: str) -> None:
        self.job_key = job_key
        super().__init__(f"a job with key {job_key!r} already exists")


class WindowExistsError(ConflictError):
    """A maintenance window with this name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a maintenance window named {name!r} already exists")


class FunctionAlreadyRegisteredError(ConflictError):
    """Another function is already registered under this name."""


class JobBusyError(ConflictError):
    """The job's overlap policy refused another run while runs are active."""


class JobPausedError(ConflictError):
    """The job is paused."""


class JobOrphanedError(ConflictError):
    """The job's function is no longer registered in code, so it cannot run."""


class VersionConflictError(ConflictError):
    """The job was changed by someone else since it was read."""


# -- infrastructure ----------------------------------------------------------


class StorageError(TaskmgrError):
    """The storage backend failed; the original driver error is chained as ``__cause__``."""


class DataRejectedError(StorageError):
    """The database refused the data of a write (a value it cannot store): unlike an
    outage, writing the same data again fails the same way."""


class TransactionTimedOutError(StorageError):
    """The database ended a transaction that waited too long between two of its
    statements (PostgreSQL's ``idle_in_transaction_session_timeout``): this process was
    starved of CPU or stopped. Nothing of the transaction was written."""


class ServiceStateError(TaskmgrError, RuntimeError):
    """The service is not in a state that allows this operation."""


class SchemaError(StorageError):
    """The database schema does not match this version of taskmgr."""


class SchemaBehindError(SchemaError):
    """The database schema is older than this taskmgr: run ``taskmgr db upgrade``
    (or start with ``auto_migrate=True``)."""


class SchemaAheadError(SchemaError):
    """The database schema was migrated by a newer taskmgr than this one."""
