"""``taskmgr demo`` and the CLI's conventions, run as a user runs them: in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import taskmgr

TASKMGR_SCRIPT = Path(sys.executable).with_name("taskmgr")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKMGR_DATABASE_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    # each demo its own dashboard port: the tests' demos run side by side
    env["TASKMGR_DEMO_PORT"] = str(_free_port())
    env.update(extra)
    return env


def _taskmgr(
    *args: str, cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskmgr", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _rows(stdout: str, status: str) -> list[str]:
    return [line for line in stdout.splitlines() if f"  {status}" in line and "demo." in line]


@pytest.mark.slow
def test_demo_runs_jobs_and_exits_0(tmp_path: Path) -> None:
    result = _taskmgr("demo", "--duration", "5", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "no history yet" in result.stdout
    assert _rows(result.stdout, "success"), result.stdout
    assert "demo.tick" in result.stdout
    assert "stopped (duration reached)" in result.stdout
    assert result.stderr == ""
    # the default database is a file in the current directory
    assert (tmp_path / "taskmgr-demo.db").is_file()


@pytest.mark.slow
def test_second_run_shows_the_persisted_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    first = _taskmgr("demo", "--duration", "3", cwd=tmp_path, TASKMGR_DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    ran = len(_rows(first.stdout, "success"))
    assert ran >= 1, first.stdout

    second = _taskmgr("demo", "--duration", "1", "--database-url", url, cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    history = second.stdout.split("running 4 demo jobs")[0]
    assert "history from previous runs:" in history
    count = int(history.split("history from previous runs:")[1].split()[0])
    assert count >= ran
    assert _rows(history, "success")  # the last few executions are listed
    assert not (tmp_path / "taskmgr-demo.db").exists()  # the URL was used, not the default


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_demo_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "taskmgr", "demo"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "press Ctrl-C to stop" not in seen and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen += line
        assert "press Ctrl-C to stop" in seen, seen
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert f"stopped ({signum.name})" in stdout
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "nosuchdialect://host/db",
        "sqlite:////nonexistent-directory/taskmgr/demo.db",
    ],
)
def test_a_bad_database_url_is_one_line_and_exit_1(tmp_path: Path, url: str) -> None:
    result = _taskmgr("demo", "--duration", "1", "--database-url", url, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("duration", ["-1", "0", "soon"])
def test_a_bad_duration_is_a_usage_error(tmp_path: Path, duration: str) -> None:
    result = _taskmgr("demo", "--duration", duration, cwd=tmp_path)

    assert result.returncode == 2
    assert "--duration" in result.stderr
    assert not (tmp_path / "taskmgr-demo.db").exists()  # refused before touching anything


def test_version(tmp_path: Path) -> None:
    result = _taskmgr("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == f"taskmgr, version {taskmgr.__version__}"


def test_help_lists_the_demo(tmp_path: Path) -> None:
    result = _taskmgr("--help", cwd=tmp_path)

    assert result.returncode == 0
    assert "demo" in result.stdout


@pytest.mark.skipif(
    not TASKMGR_SCRIPT.exists() and shutil.which("taskmgr") is None,
    reason="the taskmgr console script is not installed in this environment",
)
def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = str(TASKMGR_SCRIPT) if TASKMGR_SCRIPT.exists() else "taskmgr"
    result = subprocess.run(
        [script, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0
    assert taskmgr.__version__ in result.stdout


@pytest.mark.slow
def test_the_demo_serves_its_dashboard_and_api_while_it_runs(tmp_path: Path) -> None:
    import httpx2 as httpx

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "taskmgr", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "press Ctrl-C to stop" not in banner:
            line = process.stdout.readline()
            assert line, banner + process.stderr.read() if process.stderr else banner
            banner += line
        assert f"dashboard: http://127.0.0.1:{port}/" in banner
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        jobs = httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=10).json()
        assert "demo.tick" in {job["key"] for job in jobs["items"]}
        # the demo's dashboard offers its actions (writes="readers" on 127.0.0.1)...
        session = httpx.get(f"http://127.0.0.1:{port}/session", timeout=10).json()
        assert session == {"can_write": True}
        run = httpx.post(
            f"http://127.0.0.1:{port}/jobs/demo.tick/trigger",
            headers={"X-Taskmgr-Action": "1"},
            timeout=10,
        )
        # 409 when a tick of its own is already due or running: the write got through
        assert run.status_code in (202, 409), run.text
        # ...but not to another page of this host: a write from another port is refused
        foreign = httpx.post(
            f"http://127.0.0.1:{port}/jobs/demo.tick/pause",
            headers={"X-Taskmgr-Action": "1", "Origin": f"http://127.0.0.1:{port + 1}"},
            timeout=10,
        )
        assert foreign.status_code == 403, foreign.text
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    with pytest.raises(httpx.ConnectError):  # the server stopped with the demo
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_dashboard_port_in_use_is_one_note_and_the_demo_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _taskmgr("demo", "--duration", "2", "--port", port, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [note] = [line for line in result.stdout.splitlines() if line.startswith("dashboard:")]
    assert note.startswith("dashboard: not served ([Errno ")
    assert note.endswith("Address already in use; choose another with --port)")
    assert _rows(result.stdout, "success"), result.stdout
    assert result.stderr == ""


def test_no_dashboard_means_no_server(tmp_path: Path) -> None:
    result = _taskmgr("demo", "--duration", "1", "--no-dashboard", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dashboard:" not in result.stdout
