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

import re
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmgr.exceptions import InvalidAlertError, InvalidInputError, InvalidWebhookError

__all__ = [
    "ENV_PREFIX",
    "TaskmgrSettings",
    "load_settings",
    "redact_text",
    "redact_url",
    "settings_table",
]

ENV_PREFIX = "TASKMGR_"
#: The longest alert threshold a setting takes (seconds).
_YEAR = 366 * 86400.0


#: What a secret is replaced by wherever taskmgr shows a URL or an error.
MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: The user information as SQLAlchemy reads it (a user name without ``:`` or ``/``, a
#: password up to the first ``@``), except that a user name never spans ``?`` or ``#``:
#: ``db://host?password=p@ss`` is a query, whatever the parser.
_USERINFO = re.compile(r"([^:/?#]*)(?::([^@]*))?@")
_SQLALCHEMY_USERINFO = re.compile(r"([^:/]*)(?::([^@]*))?@")
#: Query parameters whose value is a credential (``password``, ``sslpassword``,
#: ``passfile``, ``*token*``, ``*secret*``, ...). ``sslmode``, ``sslkey`` or
#: ``sslcert`` (modes and file paths) stay visible.
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|credential|signature|^sig$|^key$"
    r"|(?:api|access|secret|private|master|account|auth|client|shared|sas)_?key$"
)
#: A URL inside free text (an error message, a log line).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
#: ``keyword=value`` pairs of a libpq connection string or a driver message.
_SECRET_KEYWORD = re.compile(
    r"(\b[\w.-]*(?:password|passwd|pwd|secret|token)[\w.-]*\s*[=:]\s*)"
    r"('(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s,;&'\"]+)",
    re.IGNORECASE,
)


def redact_url(url: object) -> str:
    """``url`` (a string or a ``sqlalchemy.URL``) as it may be shown: its password and
    the values of credential query parameters (``?password=``, ``?sslpassword=``,
    ``?token=``, ...) replaced by ``***``.

    The one redaction taskmgr applies wherever a URL is shown (errors, logs, ``taskmgr
    config show``, health, ``repr``). It reads the URL the way the most revealing
    parser would: a password holding an unencoded ``@`` (``user:p@ss@host``) is hidden
    up to the last ``@`` of the authority, where SQLAlchemy would stop at the first and
    show the rest as the host. A string without a scheme is not shown at all.
    """
    render = getattr(url, "render_as_string", None)
    text = render(hide_password=False) if callable(render) else str(url)
    scheme = _SCHEME.match(text)
    if scheme is None:
        return "<unparseable URL>"
    rest = text[scheme.end() :]
    shown = ""
    userinfo = None if rest.startswith("/") else _userinfo(rest)  # "/": no host
    if userinfo is not None:
        end = userinfo.end()
        # A password with an unencoded '@': hide up to the last '@' before the query.
        query_at = _find_any(rest, "?#", end)
        last_at = rest.rfind("@", end, query_at)
        if last_at >= 0:
            end = last_at + 1
        user = userinfo.group(1)
        hidden = userinfo.group(2) is not None or end > userinfo.end()
        shown = f"{user}:{MASK}@" if hidden else f"{user}@"
        rest = rest[end:]
    query_at = rest.find("?")
    if query_at >= 0:
        rest = rest[: query_at + 1] + _redact_query(rest[query_at + 1 :])
    return f"{scheme.group(0)}{shown}{rest}"


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted by
    :func:`redact_url` and the values of ``password=...``-like pairs (a libpq
    connection string, a driver's message) replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _SECRET_KEYWORD.sub(lambda m: m.group(1) + MASK, text)


def _userinfo(rest: str) -> re.Match[str] | None:
    found = _USERINFO.match(rest)
    if found is None:  # a user name with '?' or '#' and a password: as SQLAlchemy reads it
        found = _SQLALCHEMY_USERINFO.match(rest)
        if found is not None and found.group(2) is None:
            return None  # 'host?x=a@b': a query, not a user
    return found


def _find_any(text: str, chars: str, start: int) -> int:
    found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
    return min(found) if found else len(text)


def _redact_query(query: str) -> str:
    from urllib.parse import unquote_plus

    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    pairs = []
    for pair in query.split("&"):
        name, sep, _value = pair.partition("=")
        if sep and _SECRET_PARAM.search(unquote_plus(name).lower().replace("-", "_")):
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs) + fragment


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
        "redacted). PostgreSQL: `postgresql+psycopg://user:pw@host/db`; the asyncio forms "
        "(`postgresql+asyncpg://`, `sqlite+aiosqlite://`) work too: taskmgr's threads "
        "connect through the sync driver of the same database.",
    )
    table_prefix: str = Field(
        "taskmgr_",
        pattern=r"^[a-z][a-z0-9_]{0,19}$",
        description="Prefix of taskmgr's table names (`<prefix>jobs`, ...).",
    )
    db_schema: str | None = Field(
        None,
        description="PostgreSQL schema holding the tables (created by `taskmgr db upgrade` "
        "or the first start when missing). Unset: the connection's default schema.",
    )
    max_connections: int = Field(
        4,  # taskmgr.storage.sqlalchemy.engine.DEFAULT_MAX_CONNECTIONS
        ge=1,
        le=1000,
        description="Most connections one instance opens to its database, PostgreSQL's "
        "`LISTEN` connection included; idle ones are closed down to one pooled (plus the "
        "listener). `1` on PostgreSQL: no listener, changes seen by polling.",
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
    handover_timeout: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="How long a stopping instance keeps firing until a newer instance is "
        "up, seconds (a reload that starts the new processes as it stops the old ones). "
        "`0`: it stops firing at once.",
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
    audit_retention_days: float = Field(
        400.0,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description="Audit log entries older than this many days are deleted by the "
        "retention job (which runs when `history_retention_days` is set, or after "
        "`set_retention`).",
    )
    incident_retention_days: float = Field(
        400.0,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description="Incidents resolved more than this many days ago are deleted by the "
        "retention job; open incidents are never deleted.",
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
    alert_late_after: float | None = Field(
        None,
        description="Default of the jobs with a schedule that set no `alert_late_after`: "
        "an incident opens when a slot has not started this many seconds after its time. "
        "Unset: off.",
    )
    alert_failures: int | None = Field(
        None,
        description="Default of the jobs that set no `alert_failures`: an incident opens "
        "when this many finished runs in a row failed. Unset: off.",
    )
    alert_max_runtime: float | None = Field(
        None,
        description="Default of the jobs that set no `alert_max_runtime`: an incident opens "
        "when a run goes on this many seconds. Unset: off.",
    )
    alert_no_success_within: float | None = Field(
        None,
        description="Default of the jobs with a schedule that set no "
        "`alert_no_success_within`: an incident opens when no run succeeded for this many "
        "seconds (the dead-man rule). Unset: off.",
    )
    alert_interval: float = Field(
        5.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="How often the alert rules are evaluated, seconds (by one instance of "
        "the cluster at a time).",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="`http(s)://` URL that receives a signed JSON POST when an incident "
        "opens or resolves (shown redacted). Unset: no webhook.",
    )
    alert_webhook_secret: SecretStr | None = Field(
        None,
        description="Key of the webhook's HMAC-SHA256 signature (`X-Taskmgr-Signature`); a "
        "secret, never shown.",
    )

    @field_validator(
        "db_schema",
        "celery_app",
        "misfire_grace_time",
        "max_retries",
        "alert_late_after",
        "alert_failures",
        "alert_max_runtime",
        "alert_no_success_within",
        "alert_webhook_url",
        "alert_webhook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "alert_late_after", "alert_failures", "alert_max_runtime", "alert_no_success_within"
    )
    @classmethod
    def _positive_threshold(cls, value: float | None, info: Any) -> float | None:
        # the bounds of taskmgr.core.alert_options, refused with the same error
        top = 1000 if info.field_name == "alert_failures" else _YEAR
        if value is not None and not (0 < value <= top):
            raise InvalidAlertError(
                f"must be more than 0 and at most {top:.0f}, got {value!r}", field=info.field_name
            )
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise InvalidWebhookError(
                    "must be an http:// or https:// URL with a host", field="alert_webhook_url"
                )
        return value

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
        if self.alert_webhook_url is not None:
            data["alert_webhook_url"] = redact_url(self.alert_webhook_url)
        if self.alert_webhook_secret is not None:
            data["alert_webhook_secret"] = MASK
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
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidInputError):  # a check of taskmgr's own: its error
            raise cause from None
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
        secret = name in ("database_url", "alert_webhook_secret")
        kind = "secret string" if secret else _kind(field.annotation)
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
