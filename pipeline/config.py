"""`wirewash run --config wirewash.toml`: every option of `wirewash run` can come from a TOML file.

    # wirewash.toml: top-level keys are option names without the dashes
    input = ["articles/*.jsonl"]        # a list for repeatable options, or one string
    output = "lake"
    rules = ["my_rules.toml"]           # the user's own boilerplate rules, added to the packaged ones
    near_threshold = 0.85
    overwrite = true                    # flags: true or false
    runner = "FnApiRunner"              # Beam options too
    direct_num_workers = 2

The file becomes command-line arguments placed before the real ones, so command-line flags win: a scalar
given on the command line replaces the file's value, and a repeatable option (`--input`, `--rules`) given on
the command line replaces the file's whole list. Relative local paths in `input`, `output` and `rules` are
relative to the config file's folder, so a config works from any working directory.
"""
from __future__ import annotations

import argparse
import difflib
import os
import tomllib

from wirewash.transforms.errors import UsageError

__all__ = ["UsageError", "config_to_argv", "merge_argv", "option_of", "PATH_OPTIONS", "NOTICES"]

PATH_OPTIONS = ("input", "output", "rules")
# The logger of notices (what a run does, e.g. where a Kafka topic resumes): `--quiet` silences it
# (cli.configure_logging); warnings about the input and errors go to other loggers and stay.
NOTICES = "wirewash.notices"


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _actions(parser: argparse.ArgumentParser) -> dict:
    """Option name without dashes -> argparse action, for every long option of the parser. Private
    (`parser._actions`): argparse has no public listing of a parser's options; tests/test_internals.py fails by
    name if it changes."""
    found = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                found[flag[2:]] = action
    return found


def _repeatable(action) -> bool:
    """Whether an option may be given several times (`action="append"`). Private (`argparse._AppendAction`):
    argparse names its action classes only privately; tests/test_internals.py fails by name if it changes."""
    return isinstance(action, argparse._AppendAction)


def option_of(arg: str) -> str | None:
    """`--name=value` or `--name` -> `name`; anything else -> None."""
    return arg[2:].split("=", 1)[0] if arg.startswith("--") and len(arg) > 2 else None


def _is_local(path: str) -> bool:
    return "://" not in path


def config_to_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The TOML file as a list of `--name=value` arguments, each checked against the parser.

    Raises UsageError naming the file and the key for an unreadable file, bad TOML, an unknown key, or a value
    of the wrong type.
    """
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as err:
        raise UsageError(f"cannot read config file {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path} is not valid TOML: {err}") from None
    if isinstance(data.get("run"), dict):  # `[run]` table allowed, for symmetry with future commands
        data = {**{k: v for k, v in data.items() if k != "run"}, **data["run"]}
    actions = _actions(parser)
    base = os.path.dirname(os.path.abspath(path))
    argv: list[str] = []
    for key, value in data.items():
        name = key.replace("-", "_") if key.replace("-", "_") in actions else key
        if name not in actions or name in ("config", "help"):
            raise UsageError(f"{path}: unknown option {key!r}{_suggest(name, actions)}")
        action = actions[name]
        where = f"{path}: {key}"
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise UsageError(f"{where} must be true or false, got {value!r}")
            if value:
                argv.append(f"--{name}")
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not _repeatable(action):
            raise UsageError(f"{where} takes one value, got a list")
        for item in values:
            if isinstance(item, (dict, list)) or isinstance(item, bool):
                raise UsageError(f"{where} must be a {'string' if action.type is None else 'number'}, got {item!r}")
            text = str(item)
            if name in PATH_OPTIONS and _is_local(text) and not os.path.isabs(text):
                text = os.path.join(base, text)
            argv.append(f"--{name}={text}")
    try:
        parser.parse_known_args(argv)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None
    return argv


def merge_argv(config_argv: list[str], cli_argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Config arguments first, command-line ones after (argparse keeps the last value, so the command line
    wins); a repeatable option on the command line drops the config's values for it."""
    actions = _actions(parser)
    on_cli = {option_of(a) for a in cli_argv if option_of(a)}
    repeatable_on_cli = {n for n in on_cli if _repeatable(actions.get(n))}
    kept = [a for a in config_argv if option_of(a) not in repeatable_on_cli]
    return kept + cli_argv
