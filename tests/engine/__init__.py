"""Tests of `gsag/engine/`."""
