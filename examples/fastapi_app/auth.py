"""The example shop's own auth: HTTP Basic against two users, one of them an admin.

Any auth FastAPI can express works the same way: taskmgr only receives the
dependencies. Basic auth is used here because browsers support it natively, so the
dashboard works without a login page. Set the passwords through the environment.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

security = HTTPBasic(realm="shop admin")


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool


def _users() -> dict[str, tuple[str, bool]]:
    return {
        "admin": (os.environ.get("SHOP_ADMIN_PASSWORD", "change-me"), True),
        "viewer": (os.environ.get("SHOP_VIEWER_PASSWORD", "look-only"), False),
    }


def current_user(credentials: Annotated[HTTPBasicCredentials, Depends(security)]) -> User:
    expected = _users().get(credentials.username)
    # compare_digest on both branches: the time taken does not reveal valid names
    password = expected[0] if expected else secrets.token_hex(8)
    if not secrets.compare_digest(credentials.password.encode(), password.encode()) or not expected:
        raise HTTPException(401, "invalid credentials", headers={"WWW-Authenticate": "Basic"})
    return User(credentials.username, expected[1])


def require_admin(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(403, "only admins may change jobs")
    return user


def user_name(user: Annotated[User, Depends(current_user)]) -> str:
    return user.name
