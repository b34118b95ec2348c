"""taskmgr benchmarks: ``python -m benchmarks`` (``--quick``) from the repository root.

Every scenario runs side by side with its baselines in one run and prints one table
(figures and ratios taskmgr / baseline). Loads are bounded (counts and durations),
everything talks to loopback services only, and every process started is stopped.
See docs/benchmarks.md for the method and the latest results.
"""
