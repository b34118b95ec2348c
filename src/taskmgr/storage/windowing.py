"""What every backend does alike with maintenance windows: the checks of a window to
store, against the stored ones, and a window as its audit entry shows it. No I/O
here; the rules applied are :mod:`taskmgr.core.windows`'."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from taskmgr.core.windows import MaintenanceWindow, check_new_window, check_no_overlap
from taskmgr.exceptions import InvalidInputError, WindowExistsError, WindowJobNotFoundError

__all__ = ["check_against_stored", "checked_window", "window_details"]


def checked_window(window: object, now: datetime) -> MaintenanceWindow:
    """``window`` if it can be stored at ``now``: a :class:`MaintenanceWindow` that says
    when it was created and is not over.

    :raises InvalidInputError: not a window, or no ``created_at``.
    :raises WindowInPastError: a one-off window over by ``now``.
    """
    if not isinstance(window, MaintenanceWindow):
        raise InvalidInputError(
            f"must be a MaintenanceWindow, got {type(window).__name__}", field="window"
        )
    if window.created_at is None:
        raise InvalidInputError("a stored window says when it was created", field="created_at")
    return check_new_window(window, now)


def check_against_stored(
    window: MaintenanceWindow,
    stored: Iterable[MaintenanceWindow],
    *,
    job_exists: bool,
    now: datetime,
) -> None:
    """Refuse ``window`` if its name is taken, its job does not exist, or it overlaps a
    stored window of its scope (in that order).

    :raises WindowExistsError: / :raises WindowJobNotFoundError: / :raises
        WindowOverlapError:
    """
    stored = list(stored)
    if any(other.name == window.name for other in stored):
        raise WindowExistsError(window.name)
    if window.job_key is not None and not job_exists:
        raise WindowJobNotFoundError(f"no job with key {window.job_key!r}")
    check_no_overlap(window, stored, now)


def window_details(window: MaintenanceWindow) -> dict[str, Any]:
    """A window as its audit entry shows it (JSON)."""
    return window.model_dump(mode="json")
