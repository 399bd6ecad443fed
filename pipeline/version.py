"""The installed wirewash version, from the package metadata (pyproject.toml's `version`). Imports nothing
heavy, so `wirewash --version` answers at once."""
from importlib.metadata import PackageNotFoundError, version as _installed

__all__ = ["wirewash_version"]


def wirewash_version() -> str:
    """`X.Y.Z`, or `0+unknown` when run from a source tree that was never installed."""
    try:
        return _installed("wirewash")
    except PackageNotFoundError:
        return "0+unknown"
