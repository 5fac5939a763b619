"""What the command lines share: option types that refuse impossible values when the command line is read, and
checks of the device and the output folder made before any work, so that a mistake costs seconds, not a run."""

from __future__ import annotations

import argparse
import math
import os
import sys


def _number(kind, test, wanted: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text} must be {wanted}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "at least 1")
non_negative_int = _number(int, lambda v: v >= 0, "at least 0")
positive_float = _number(float, lambda v: 0 < v < math.inf, "positive and finite")
non_negative_float = _number(float, lambda v: 0 <= v < math.inf, "at least 0 and finite")
probability = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")  # NaN fails both comparisons


# The errors that carry a message meant for the user (bad settings, data, files, checkpoints): a command prints the
# message alone, not under a traceback. RFS_TRACEBACK=1 shows the traceback too (for a bug report).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FloatingPointError)


def run_command(run, *args):
    """``run(*args)``, with a user error printed as ``error: message`` and exit status 2 (argparse's)."""
    try:
        return run(*args)
    except USER_ERRORS as error:
        if os.environ.get("RFS_TRACEBACK") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def check_device(parser: argparse.ArgumentParser, name: str | None) -> None:
    """``--device`` names a device this machine has (else the parser's error, before anything is loaded)."""
    if name is None:
        return
    from ..settings import pick_device

    try:
        pick_device(name)
    except (RuntimeError, ValueError) as error:  # RuntimeError: a device type torch does not know
        parser.error(f"--device {name}: {error}")
