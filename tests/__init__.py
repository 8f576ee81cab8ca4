"""The test suite. Folders mirror the package: tests of `gsag/x/y.py` live in `tests/x/`."""
