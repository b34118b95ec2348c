"""``python -m taskmgr``: the same as the ``taskmgr`` command."""

from taskmgr.cli import main

if __name__ == "__main__":
    main(prog_name="taskmgr")
