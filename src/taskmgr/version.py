"""taskmgr's version: a leaf module, so any layer can read it without importing the
root package (which imports the whole public API).

Also the single source of the distribution's version (``[tool.hatch.version]`` in
``pyproject.toml``).
"""

__version__ = "0.1.0"
