"""Tests of `gsag/data/`."""
