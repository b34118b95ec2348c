"""The ``taskmgr`` command line."""

from taskmgr.cli.main import main

__all__ = ["main"]
