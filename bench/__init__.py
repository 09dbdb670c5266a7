"""celeryflow benchmarks (issue 7): ``python -m bench`` writes docs/benchmarks.md.

Not tests: nothing here asserts a timing. See :mod:`bench.runner` for the cases.
"""
