"""The dashboard's files: served by plain routes under the prefix, with a strict CSP,
no inline script, no external URL, only relative links."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from starlette.testclient import TestClient

from tests.http.conftest import url

STATIC = resources.files("taskmgr.fastapi").joinpath("static")


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/", "text/html; charset=utf-8"),
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


def test_no_external_urls_and_a_small_script() -> None:
    for name in ("index.html", "app.js", "app.css"):
        text = STATIC.joinpath(name).read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    script = STATIC.joinpath("app.js").read_bytes()
    assert len(script) < 30 * 1024
    assert b"innerHTML" not in script and b"eval(" not in script  # text only via textContent
