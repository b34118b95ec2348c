"""One redaction for every URL taskmgr shows: passwords in the user information (even
holding an unencoded ``@``), credential query parameters, broker URLs; harmless parts
(``sslmode``, SQLite paths with ``@``) stay readable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from taskmgr.exceptions import StorageError
from taskmgr.settings import TaskmgrSettings, redact_text, redact_url
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, create_engine
from taskmgr.storage.sqlalchemy.engine import describe_error

# (url, what it must show, secrets that must not show)
URLS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "postgresql+psycopg://user:s3cret@db.example:5432/app",
        "postgresql+psycopg://user:***@db.example:5432/app",
        ("s3cret",),
    ),
    (
        "postgresql://user:p@ss@host/db",  # SQLAlchemy alone would show 'ss@host'
        "postgresql://user:***@host/db",
        ("p@ss", "ss@"),
    ),
    (
        "postgresql://user:a@b@c@host:5432/db?sslmode=require",
        "postgresql://user:***@host:5432/db?sslmode=require",
        ("a@b", "b@c", "c@host"),
    ),
    ("postgresql://user:p%40ss@host/db", "postgresql://user:***@host/db", ("p%40ss",)),
    ("postgresql://user:pa/ss?x@host/db", "postgresql://user:***@host/db", ("pa/ss", "ss?x")),
    (
        "postgresql://user@host/db?password=hunter2&sslmode=verify-full",
        "postgresql://user@host/db?password=***&sslmode=verify-full",
        ("hunter2",),
    ),
    (
        "postgresql://host/db?sslpassword=keypass&sslkey=/etc/client.key&sslmode=require",
        "postgresql://host/db?sslpassword=***&sslkey=/etc/client.key&sslmode=require",
        ("keypass",),
    ),
    (
        "postgresql://h/db?password=p@ss",  # a query, not a user 'h?password=p'
        "postgresql://h/db?password=***",
        ("p@ss", "@ss"),
    ),
    ("postgresql://h?password=p@ss", "postgresql://h?password=***", ("p@ss", "@ss")),
    (
        "postgresql://u:pw@h/db?PassWord=x1&auth_token=t0k&client_secret=c5&api_key=k9&x=1",
        "postgresql://u:***@h/db?PassWord=***&auth_token=***&client_secret=***&api_key=***&x=1",
        ("pw@", "x1", "t0k", "c5", "k9"),
    ),
    ("mysql://u:pw@h/db?pass%77ord=enc0ded", "mysql://u:***@h/db?pass%77ord=***", ("enc0ded",)),
    ("sqlite:////var/lib/a@b/taskmgr.db", "sqlite:////var/lib/a@b/taskmgr.db", ()),
    ("sqlite:///rel@tive.db", "sqlite:///rel@tive.db", ()),
    ("sqlite://", "sqlite://", ()),
    ("redis://:r3dis@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0", ("r3dis",)),
    ("redis://default:p@ss@cache:6379/1", "redis://default:***@cache:6379/1", ("p@ss", "ss@")),
    ("rediss://cache:6380/0?password=rp", "rediss://cache:6380/0?password=***", ("rp",)),
    ("amqp://guest:gu3st@rabbit:5672//", "amqp://guest:***@rabbit:5672//", ("gu3st",)),
    ("amqps://u:a@m@rabbit/vhost", "amqps://u:***@rabbit/vhost", ("a@m", "m@")),
    ("us?er:pw@host", "<unparseable URL>", ("pw",)),
    ("db://us?er:pw@host/x", "db://us?er:***@host/x", ("pw",)),
    ("not a url password=x", "<unparseable URL>", ("x",)),
]


@pytest.mark.parametrize(("url", "shown", "secrets"), URLS)
def test_redact_url(url: str, shown: str, secrets: tuple[str, ...]) -> None:
    redacted = redact_url(url)
    assert redacted == shown
    for secret in secrets:
        assert secret not in redacted


def test_sqlalchemy_url_objects_are_redacted_too() -> None:
    url = sa.URL.create(
        "postgresql+psycopg", "u", "p@ss", "h", 5432, "db", {"sslpassword": "kp", "sslmode": "a"}
    )
    assert redact_url(url) == "postgresql+psycopg://u:***@h:5432/db?sslmode=a&sslpassword=***"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "cannot reach postgresql://u:p@ss@h/db: timeout",
            "cannot reach postgresql://u:***@h/db: timeout",
        ),
        (
            "invalid dsn: host=h user=u password=secr3t dbname=x",
            "invalid dsn: host=h user=u password=*** dbname=x",
        ),
        ("sslpassword='a b' sslmode=require", "sslpassword=*** sslmode=require"),
        ('FATAL:  password authentication failed for user "u"', None),
        ("broker amqp://g:pw@r:5672// refused", "broker amqp://g:***@r:5672// refused"),
    ],
)
def test_redact_text(text: str, shown: str | None) -> None:
    assert redact_text(text) == (text if shown is None else shown)


def test_settings_show_the_same_redaction() -> None:
    settings = TaskmgrSettings(database_url="postgresql://u:p@ss@h/db?password=q@q")
    for text in (repr(settings), str(settings), str(settings.redacted())):
        assert "p@ss" not in text and "ss@h" not in text and "q@q" not in text
    assert settings.redacted()["database_url"] == "postgresql://u:***@h/db?password=***"


def test_storage_repr_and_connection_errors_hide_the_password() -> None:
    url = "postgresql+psycopg://u:p@ss@127.0.0.1:1/db?sslpassword=kp"
    storage = SQLAlchemyStorage(url)
    assert "ss@" not in repr(storage) and "kp" not in repr(storage)
    with pytest.raises(StorageError, match="cannot use database URL") as caught:
        storage.open()
    message = str(caught.value)
    assert "p@ss" not in message and "ss@" not in message and "kp" not in message
    assert "%40" in message  # says how to write it


def test_a_password_holding_at_is_refused_before_connecting() -> None:
    with pytest.raises(sa.exc.ArgumentError, match="%40") as caught:
        create_engine("postgresql+psycopg://u:p@ss@127.0.0.1:1/db")
    assert "ss" not in str(caught.value).replace("password", "")
    create_engine("postgresql+psycopg://u:p%40ss@127.0.0.1:1/db").dispose()  # encoded: fine


def test_statement_parameters_are_hidden_by_default() -> None:
    engine = create_engine("sqlite://")
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM missing WHERE x = :x"), {"x": "the-secret"})
        assert "the-secret" not in str(caught.value)
        assert "the-secret" not in describe_error(caught.value)
    finally:
        engine.dispose()
    shown = create_engine("sqlite://", hide_parameters=False)  # the caller may turn it off
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught, shown.connect() as conn:
            conn.execute(sa.text("SELECT * FROM missing WHERE x = :x"), {"x": "visible"})
        assert "visible" in str(caught.value)
    finally:
        shown.dispose()


def test_describe_error_redacts_what_the_driver_says() -> None:
    class DriverError(Exception):
        pass

    exc = sa.exc.OperationalError(
        "SELECT 1", {}, DriverError("could not connect: host=h password=hunter2 port=5432")
    )
    assert describe_error(exc) == "could not connect: host=h password=*** port=5432"
