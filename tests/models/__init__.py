"""Tests of `gsag/models/`."""
