"""What a job is before it is stored: :class:`JobDefinition`, its options, their
bounds and their checks (the ones ``@scheduled_job``, ``create_job`` and the storage
apply alike), and :class:`RetryBackoff`. Re-exported by :mod:`taskmgr.core.models`."""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import re
from datetime import date
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from taskmgr.core.alert_options import ALERT_OPTIONS, checked_alert_option
from taskmgr.core.enums import OverlapPolicy
from taskmgr.core.exclusions import check_exclude_dates
from taskmgr.core.triggers import Manual, TriggerSpec
from taskmgr.core.validation import (
    reraise_validation,
    retention_seconds,
    validate_job_key,
    validate_kwargs,
)
from taskmgr.exceptions import InvalidPolicyError

__all__ = ["FrozenModel", "JobDefinition", "RetryBackoff"]

#: Seconds a slot may start late before it is recorded as ``missed`` (None: no limit).
DEFAULT_MISFIRE_GRACE_TIME = 60.0
#: Largest ``max_retries`` / ``max_instances`` accepted.
MAX_RETRIES = 100
MAX_INSTANCES = 1000
#: Longest ``concurrency_key`` (an argument name) and stored ``concurrency_value``.
MAX_CONCURRENCY_KEY = 100
MAX_CONCURRENCY_VALUE = 255
#: Display names of a job: at most this many languages, keyed by a language tag
#: (BCP 47 in shape: a 2-8 letter language, then subtags of 1-8 letters or digits).
MAX_NAMES = 50
MAX_NAME = 200
MAX_LANGUAGE_TAG = 35
LANGUAGE_TAG_REGEX = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"
LANGUAGE_TAG_PATTERN = re.compile(r"(?=.{2,35}\Z)[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*", re.ASCII)
#: Longest ``timeout`` / ``misfire_grace_time`` accepted (seconds): one year.
MAX_SECONDS = 366 * 86400.0
#: What can name a dispatcher (a job's ``dispatch``, the service's ``dispatchers``).
DISPATCH_NAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DISPATCH_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", re.ASCII)


class FrozenModel(BaseModel):
    """A frozen model that refuses unknown fields: every public model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryBackoff(FrozenModel):
    """Delay before retry ``n`` (1-based): ``min(max, base * 2**(n-1))``, then reduced by a
    random fraction of at most ``jitter``. With ``jitter <= 0.5`` delays never shrink."""

    base: float = 1.0
    max: float = 300.0
    jitter: float = 0.5

    @field_validator("base", "max")
    @classmethod
    def _seconds(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
            raise InvalidPolicyError(
                f"must be a number of seconds in (0, {MAX_SECONDS:g}], got {value!r}",
                field="retry_backoff",
            )
        return float(value)

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InvalidPolicyError(
                f"jitter must be a fraction in [0, 1], got {value!r}", field="retry_backoff.jitter"
            )
        return float(value)

    def delay(self, retry_number: int, rand: float) -> float:
        """The delay before retry ``retry_number`` given a random ``rand`` in [0, 1)."""
        raw = min(self.max, self.base * 2.0 ** min(retry_number - 1, 64))
        return raw * (1.0 - self.jitter * rand)


def _seconds_or_none(value: Any, field: str, *, minimum: float = 0.0) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPolicyError(f"must be a number of seconds, got {value!r}", field=field)
    if not (math.isfinite(value) and minimum < value <= MAX_SECONDS):
        raise InvalidPolicyError(
            f"must be in ({minimum:g}, {MAX_SECONDS:g}] seconds, got {value!r}", field=field
        )
    return float(value)


class JobDefinition(FrozenModel):
    """Everything a job is, before it is stored: what ``@scheduled_job`` and
    ``create_job`` validate. ``func`` is the registered name of the function to run."""

    key: str
    func: str
    trigger: TriggerSpec
    names: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    max_instances: int = 1
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    #: A task's argument whose value groups its runs: ``max_instances`` then bounds
    #: the runs of each value, not of the whole task (None: the whole task).
    concurrency_key: str | None = None
    misfire_grace_time: float | None = DEFAULT_MISFIRE_GRACE_TIME
    coalesce: bool = True
    max_retries: int = 0
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    timeout: float | None = None
    queue: str | None = None
    #: How long the job's finished executions are kept (seconds), instead of the
    #: global retention (None: the global one).
    retention: float | None = None
    #: The name of the service's dispatcher that runs it (None: the default one).
    dispatch: str | None = None
    #: The alert thresholds (:mod:`taskmgr.core.alert_options`); None: the service's.
    alert_late_after: float | None = None
    alert_failures: int | None = None
    alert_max_runtime: float | None = None
    alert_no_success_within: float | None = None
    #: Dates on which its slots are skipped, read in its trigger's time zone
    #: (:mod:`taskmgr.core.windows`); sorted, each once.
    exclude_dates: tuple[date, ...] = ()
    enabled: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            reraise_validation(exc)

    @field_validator("key", "func", mode="before")
    @classmethod
    def _key(cls, value: Any) -> str:
        return validate_job_key(value)

    @field_validator("kwargs", mode="before")
    @classmethod
    def _kwargs(cls, value: Any) -> dict[str, Any]:
        return validate_kwargs({} if value is None else value)

    @field_validator("names", mode="before")
    @classmethod
    def _names(cls, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and LANGUAGE_TAG_PATTERN.fullmatch(k) is not None
            and len(v) <= MAX_NAME
            for k, v in value.items()
        ):
            raise InvalidPolicyError(
                f"must map language tags (BCP 47, e.g. 'en', 'pt-BR'; at most "
                f"{MAX_LANGUAGE_TAG} characters) to names of at most {MAX_NAME} characters",
                field="names",
            )
        if len(value) > MAX_NAMES:
            raise InvalidPolicyError(
                f"at most {MAX_NAMES} display names (one per language), got {len(value)}",
                field="names",
            )
        if any("\x00" in v for v in value.values()):
            raise InvalidPolicyError("must not contain NUL characters", field="names")
        return dict(value)

    @field_validator("description", "queue", mode="before")
    @classmethod
    def _text(cls, value: Any, info: Any) -> str | None:
        limit = 2000 if info.field_name == "description" else 200
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit or "\x00" in value:
            raise InvalidPolicyError(
                f"must be a string of at most {limit} characters without NUL",
                field=info.field_name,
            )
        return value

    @field_validator("max_instances", mode="before")
    @classmethod
    def _max_instances(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES:
            raise InvalidPolicyError(
                f"must be an integer in 1-{MAX_INSTANCES}, got {value!r}", field="max_instances"
            )
        return value

    @field_validator("max_retries", mode="before")
    @classmethod
    def _max_retries(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
            raise InvalidPolicyError(
                f"must be an integer in 0-{MAX_RETRIES}, got {value!r}", field="max_retries"
            )
        return value

    @field_validator("overlap_policy", mode="before")
    @classmethod
    def _overlap(cls, value: Any) -> OverlapPolicy:
        try:
            return OverlapPolicy(value)
        except ValueError:
            allowed = ", ".join(p.value for p in OverlapPolicy)
            raise InvalidPolicyError(
                f"must be one of {allowed}, got {value!r}", field="overlap_policy"
            ) from None

    @field_validator("misfire_grace_time", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> float | None:
        return _seconds_or_none(value, "misfire_grace_time", minimum=-1e-9)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float | None:
        return _seconds_or_none(value, "timeout")

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> float | None:
        return retention_seconds(value)

    @field_validator(*ALERT_OPTIONS, mode="before")
    @classmethod
    def _alert(cls, value: Any, info: Any) -> float | int | None:
        return checked_alert_option(info.field_name, value)

    @field_validator("exclude_dates", mode="before")
    @classmethod
    def _exclude_dates(cls, value: Any) -> tuple[date, ...]:
        return check_exclude_dates(value)

    @field_validator("dispatch", mode="before")
    @classmethod
    def _dispatch(cls, value: Any) -> str | None:
        if value is not None and (
            not isinstance(value, str) or DISPATCH_NAME_PATTERN.fullmatch(value) is None
        ):
            raise InvalidPolicyError(
                f"must be None or the name of one of the service's dispatchers "
                f"(e.g. 'celery', 'inline'), got {value!r}",
                field="dispatch",
            )
        return value

    @field_validator("coalesce", "enabled", mode="before")
    @classmethod
    def _bool(cls, value: Any, info: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidPolicyError(f"must be true or false, got {value!r}", field=info.field_name)
        return value

    @field_validator("concurrency_key", mode="before")
    @classmethod
    def _concurrency_key(cls, value: Any) -> str | None:
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not value.isidentifier()
            or keyword.iskeyword(value)
            or len(value) > MAX_CONCURRENCY_KEY
        ):
            raise InvalidPolicyError(
                f"must be None or the name of an argument (a Python identifier of at most "
                f"{MAX_CONCURRENCY_KEY} characters), got {value!r}",
                field="concurrency_key",
            )
        return value

    @model_validator(mode="after")
    def _bounded_per_value(self) -> JobDefinition:
        # Runs are grouped by an argument value only where every run is asked for with
        # arguments (a task: no slot of a schedule), and where a run of a full group
        # waits rather than being skipped or started anyway (the queue policy).
        if self.concurrency_key is not None:
            if not isinstance(self.trigger, Manual):
                raise InvalidPolicyError(
                    "only a task (a job without a schedule) can bound its runs per argument value",
                    field="concurrency_key",
                )
            if self.overlap_policy is not OverlapPolicy.QUEUE:
                raise InvalidPolicyError(
                    "needs the queue overlap policy (a task's concurrency=N): the runs "
                    f"of a busy value wait, got {self.overlap_policy.value!r}",
                    field="concurrency_key",
                )
        return self

    @model_validator(mode="after")
    def _dates_of_a_schedule(self) -> JobDefinition:
        if self.exclude_dates and isinstance(self.trigger, Manual):
            raise InvalidPolicyError(
                "only a job with a schedule has slots to exclude (a task has none)",
                field="exclude_dates",
            )
        return self

    @model_validator(mode="after")
    def _one_place_to_run(self) -> JobDefinition:
        # queue="inline" is the older way to say dispatch="inline": never both ways apart
        if self.queue == "inline" and self.dispatch not in (None, "inline"):
            raise InvalidPolicyError(
                f"queue 'inline' runs the job in the scheduler's process (the older form "
                f"of dispatch='inline'), so it cannot be dispatched to {self.dispatch!r}",
                field="queue",
            )
        return self

    def fingerprint(self) -> str:
        """A stable hash of the definition, to tell whether code changed it since last sync."""
        # Without a concurrency key or a retention the hash is the one of the versions
        # before the options existed, so upgrading does not make every job look changed.
        unset = {
            name
            for name in ("concurrency_key", "retention", "dispatch", *ALERT_OPTIONS)
            if getattr(self, name) is None
        }
        if not self.exclude_dates:
            unset.add("exclude_dates")
        data = self.model_dump(mode="json", exclude=unset or None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]
