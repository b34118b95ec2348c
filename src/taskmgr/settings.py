"""``TaskmgrSettings``: taskmgr's configuration, read from ``TASKMGR_*`` variables.

Precedence, highest first: an argument passed to the constructor (of
``SchedulerService`` or of ``TaskmgrSettings`` itself), then the environment, then
the defaults below. No ``.env`` file is read unless you ask for one
(``TaskmgrSettings(_env_file=".env")``). The database URL is a secret: it is held as
a :class:`~pydantic.SecretStr` and shown only with its password replaced
(:meth:`TaskmgrSettings.redacted`, ``taskmgr config show``, ``repr``).

The table in ``docs/configuration.md`` is generated from this model
(:func:`settings_table`); a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmgr.exceptions import InvalidInputError

__all__ = [
    "ENV_PREFIX",
    "TaskmgrSettings",
    "load_settings",
    "redact_url",
    "settings_table",
]

ENV_PREFIX = "TASKMGR_"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (or a placeholder when it does
    not parse, since a malformed URL may still hold a password)."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


class TaskmgrSettings(BaseSettings):
    """Settings for a :class:`~taskmgr.SchedulerService` and the ``taskmgr`` command."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    database_url: SecretStr = Field(
        SecretStr("sqlite:///taskmgr.db"),
        description="SQLAlchemy URL of the database (a secret: shown with its password "
        "redacted). PostgreSQL: `postgresql+psycopg://user:pw@host/db`.",
    )
    table_prefix: str = Field(
        "taskmgr_",
        pattern=r"^[a-z][a-z0-9_]{0,19}$",
        description="Prefix of taskmgr's table names (`<prefix>jobs`, ...).",
    )
    db_schema: str | None = Field(
        None, description="PostgreSQL schema holding the tables (it must exist)."
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone of cron jobs created at run time (`create_job`, HTTP, "
        "CLI) without one. Storage is always UTC; `@scheduled_job` has its own default.",
    )
    dispatcher: Literal["inline", "celery"] = Field(
        "inline",
        description="Where executions run: `inline` (this process's thread pool) or "
        "`celery` (needs `celery_app`).",
    )
    celery_app: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="The host's Celery app as `module:attribute`, for `dispatcher=celery`. "
        "Host configuration only: never read from the API or the database.",
    )
    poll_interval: float = Field(
        1.0, gt=0, description="Longest sleep of the scheduler loop between checks, seconds."
    )
    heartbeat_interval: float = Field(
        5.0, gt=0, description="How often an instance records it is alive, seconds."
    )
    heartbeat_timeout: float = Field(
        15.0,
        gt=0,
        description="An instance silent this long is dead; its running executions become "
        "`lost`. Must exceed `heartbeat_interval`.",
    )
    sweep_interval: float = Field(
        5.0, gt=0, description="How often dead instances are looked for, seconds."
    )
    misfire_grace_time: float | None = Field(
        None,
        gt=0,
        description="Default misfire grace (seconds) of jobs created at run time that do "
        "not set one: a slot later than this is recorded `missed`. Unset: 60.",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        description="Default retry count of jobs created at run time that do not set one. "
        "Unset: 0.",
    )
    history_retention_days: float | None = Field(
        None,
        ge=0,
        description="Finished executions older than this many days are deleted by the "
        "built-in retention job (`taskmgr.retention`, hourly). Unset (the default): "
        "history is kept until you delete it.",
    )
    max_kwargs_bytes: int = Field(
        64 * 1024,  # taskmgr.core.validation.KWARGS_MAX_BYTES
        ge=2,
        le=1024 * 1024,
        description="Largest arguments of a run (deferred task, manual run, job), as "
        "compact JSON, in bytes; larger ones are refused before anything is written.",
    )
    dashboard_write: bool = Field(
        True,
        description="Whether the dashboard offers actions (trigger, pause, resume); "
        "`false` makes it read-only. Auth is still the host's router dependency.",
    )
    auto_migrate: bool = Field(
        False,
        description="Upgrade a database that is behind the code on start, instead of "
        "refusing with `run: taskmgr db upgrade`. An empty database is always created.",
    )

    @field_validator("db_schema", "celery_app", "misfire_grace_time", "max_retries", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def url(self) -> str:
        """The database URL, password included (for connecting; never print it)."""
        return self.database_url.get_secret_value()

    def redacted(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, the URL's password replaced."""
        data = self.model_dump(mode="json")
        data["database_url"] = redact_url(self.url())
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(self.url()) if name == "database_url" else value)


def load_settings(**values: Any) -> TaskmgrSettings:
    """``TaskmgrSettings(**values)`` (the environment fills in the rest), with a bad
    value reported as an :class:`~taskmgr.exceptions.InvalidInputError` naming it."""
    try:
        return TaskmgrSettings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        raise InvalidInputError(
            f"{error['msg']} (env {ENV_PREFIX}{field.upper()})", field=field
        ) from None


def _kind(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{arg}`" for arg in get_args(annotation))
    args = get_args(annotation)
    if args:  # X | None
        return " or ".join(_kind(arg) for arg in args if arg is not type(None))
    return str(getattr(annotation, "__name__", annotation))


def settings_table() -> str:
    """The Markdown table of every setting (``docs/configuration.md`` embeds it)."""
    rows = [
        "| Setting | Environment variable | Type | Default | Meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in TaskmgrSettings.model_fields.items():
        kind = "secret string" if name == "database_url" else _kind(field.annotation)
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if default is None:
            shown = "unset"
        else:
            shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
        meaning = (field.description or "").replace("|", r"\|")
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {kind} | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"
