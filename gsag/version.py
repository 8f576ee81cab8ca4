"""The version of gsag (pyproject.toml holds the same number), importable without the package's
public names."""

__version__ = "0.1.0"
