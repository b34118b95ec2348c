"""The README's Quickstart: two shell lines that work, and CI runs the second one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"


def quickstart_lines() -> list[str]:
    """The lines of the first code block, which must open the README's first section."""
    text = README.read_text()
    match = re.match(r"# taskmgr\n+## Quickstart\n+```sh\n(.*?)\n```\n", text, re.DOTALL)
    assert match, "README.md must open with '# taskmgr', '## Quickstart' and a ```sh block"
    return match.group(1).splitlines()


def test_readme_opens_with_a_two_line_quickstart() -> None:
    lines = quickstart_lines()

    assert len(lines) == 2
    demo, tests = lines
    assert demo.startswith("pip install '.[fastapi]' && taskmgr demo")
    assert tests.startswith("pip install -e '.[dev]' && ")
    steps = ["ruff check .", "ruff format --check .", "mypy", "lint-imports", "pytest"]
    assert tests == "pip install -e '.[dev]' && " + " && ".join(steps)
    assert README.read_text().count(tests) == 2  # the Development section repeats it


def test_ci_runs_the_readme_test_line_verbatim() -> None:
    tests_line = quickstart_lines()[1]
    script = CI_RUN.read_text()

    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable"
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    [line] = [line for line in script.splitlines() if tests_line in line]
    assert not line.lstrip().startswith("#")  # it is run, not quoted


@pytest.mark.slow
@pytest.mark.timeout(600)  # a fresh virtualenv installs taskmgr and its dependencies
def test_the_demo_line_works_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    demo_line = quickstart_lines()[0]
    assert demo_line.endswith(" --duration 60")
    short = demo_line.removesuffix(" --duration 60") + " --duration 4"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["TASKMGR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.db'}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["TASKMGR_DEMO_PORT"] = str(free_port())

    result = subprocess.run(
        ["bash", "-c", short],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (venv / "bin" / "taskmgr").exists()  # the demo ran from the fresh install
    assert re.search(r"demo\.\S+ +\d+ +\w+ +success", result.stdout), result.stdout[-3000:]
    assert (tmp_path / "demo.db").is_file()
    assert f"dashboard: http://127.0.0.1:{env['TASKMGR_DEMO_PORT']}/" in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    headings = re.findall(r"^#+ +(.+?) *$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "CHANGELOG.md",
        "examples/README.md",
        "docs/index.md",
        "docs/concepts.md",
        "docs/quickstart.md",
        "docs/testing.md",
        "docs/guarantees.md",
        "docs/architecture.md",
        "docs/api.md",
        "docs/deployment.md",
        "docs/celery.md",
        "docs/fastapi.md",
        "docs/dashboard.md",
        "docs/cli.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/alerting-and-maintenance.md",
        "docs/benchmarks.md",
    ],
)
def test_relative_links_resolve(page: str) -> None:
    path = ROOT / page
    text = path.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an external URL
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{page}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{page}: no anchor for {target}"
