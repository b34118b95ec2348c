"""The dashboard's files: served by plain routes under the prefix, with a strict CSP,
no inline script, no external URL, only relative links."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from starlette.testclient import TestClient

from taskmgr import ExecutionStatus, ExecutionTrigger
from taskmgr.core.failures import FAILURE_STATUSES
from tests.http.conftest import url

STATIC = resources.files("taskmgr.fastapi").joinpath("static")


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/core.js", "text/javascript; charset=utf-8"),
        ("/history.js", "text/javascript; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_served_with_security_headers_and_etags(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(url(path))

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = client.get(url(path), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_prefix_without_trailing_slash_redirects_to_the_page(client: TestClient) -> None:
    response = client.get(url(""), follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"].endswith("/admin/jobs/")


def test_disabled_dashboard_has_no_page(make_client: object) -> None:
    client = make_client(dashboard=False)  # type: ignore[operator]
    assert client.get(url("/")).status_code == 404
    assert client.get(url("/jobs")).status_code == 200


def test_page_has_no_inline_script_or_style_and_only_relative_urls() -> None:
    html = STATIC.joinpath("index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'src="' in tag, tag
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None  # no script body
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    assert " style=" not in html and "<style" not in html
    for link in re.findall(r'(?:href|src)="([^"]*)"', html):
        assert not link.startswith(("/", "http:", "https:", "//", "data:")), link


SCRIPTS = ("core.js", "history.js", "incidents.js", "app.js")


def test_no_external_urls_and_small_scripts() -> None:
    for name in ("index.html", "app.css", *SCRIPTS):
        text = STATIC.joinpath(name).read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    for name in SCRIPTS:
        script = STATIC.joinpath(name).read_bytes()
        assert len(script) < 30 * 1024, name
        assert b"innerHTML" not in script and b"eval(" not in script  # text only via textContent


def test_the_page_loads_each_script_once_in_order() -> None:
    html = STATIC.joinpath("index.html").read_text()
    assert re.findall(r'<script src="([^"]+)" defer></script>', html) == list(SCRIPTS)


def test_the_filters_offer_every_status_and_trigger() -> None:
    """The history filters' choices are the API's enums (a new trigger shows up)."""
    script = STATIC.joinpath("core.js").read_text()
    glyphs = re.search(r"const GLYPHS = \{(.*?)\};", script, re.S)
    triggers = re.search(r"const TRIGGERS = \[(.*?)\];", script, re.S)
    failures = re.search(r"const FAILURE_STATUSES = \[(.*?)\];", script, re.S)
    assert glyphs and triggers and failures
    assert sorted(re.findall(r"(\w+):", glyphs.group(1))) == sorted(ExecutionStatus)
    assert re.findall(r'"(\w+)"', triggers.group(1)) == [t.value for t in ExecutionTrigger]
    assert re.findall(r'"(\w+)"', failures.group(1)) == [s.value for s in FAILURE_STATUSES]
