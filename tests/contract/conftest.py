"""One storage contract suite, run against every backend.

The ``backend``, ``open_storage`` and ``storage`` fixtures come from ``tests/conftest.py``.
"""
