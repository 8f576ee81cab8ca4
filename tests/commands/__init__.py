"""Tests of `gsag/commands/`: the commands through the real command line."""
