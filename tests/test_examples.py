"""Every example in ``examples/`` runs and does what ``examples/README.md`` says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKMGR_DATABASE_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_every_example_is_covered() -> None:
    covered = {"deferred_tasks.py", "plain_script.py", "test_my_jobs.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == covered
    readme = (EXAMPLES / "README.md").read_text()
    for name in covered:
        assert name in readme
    # fastapi_app/ runs under uvicorn in tests/http/test_example_app.py; its README
    # names each of its modules and the signup endpoint that test exercises.
    app_dir = EXAMPLES / "fastapi_app"
    app_readme = (app_dir / "README.md").read_text()
    for path in app_dir.glob("*.py"):
        assert f"`{path.name}`" in app_readme, path.name
    assert "POST /signup" in app_readme and "/signup" in readme


@pytest.mark.slow
def test_deferred_tasks(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "deferred_tasks.py")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("welcome mail")) == [
        f"welcome mail (default) to user {n}" for n in (1, 2, 3)
    ]
    assert sum("success {'sent_to':" in line for line in lines) == 3


@pytest.mark.slow
def test_plain_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "plain_script.py"), "3"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "running for 3s..."
    heartbeats = [line for line in lines if "example.heartbeat" in line and " success " in line]
    assert len(heartbeats) >= 2, result.stdout
    assert "alive at" in heartbeats[0]
    assert (tmp_path / "plain_script.db").is_file()  # a local file in the working directory


def test_my_jobs_example_passes_under_pytest(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "test_my_jobs.py"),
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
