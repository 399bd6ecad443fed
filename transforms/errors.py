"""The error a user's own mistake raises, wherever it is found: `UsageError`.

Declared here, at the bottom of the package, because stages find user mistakes too (a bad `--rules` file is
read by `transforms/boilerplate.py`) and `transforms/` imports nothing from `pipeline/`; `pipeline/config.py`
re-exports it, and the command line turns it into one line on stderr and exit code 2.
"""
from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A user mistake, said in one sentence."""
