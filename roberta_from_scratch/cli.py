"""What the command lines share: option types that refuse impossible values when the command line is read, and
checks of the device and the output folder made before any work, so that a mistake costs seconds, not a run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


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
positive_float = _number(float, lambda v: v > 0, "positive")
non_negative_float = _number(float, lambda v: v >= 0, "at least 0")
probability = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")


def check_device(parser: argparse.ArgumentParser, name: str | None) -> None:
    """``--device`` names a device this machine has (else the parser's error, before anything is loaded)."""
    if name is None:
        return
    from .settings import pick_device

    try:
        pick_device(name)
    except (RuntimeError, ValueError) as error:  # RuntimeError: a device type torch does not know
        parser.error(f"--device {name}: {error}")


def writable_dir(output_dir: str | os.PathLike, option: str = "--output-dir") -> Path:
    """Create the folder if needed and prove that a file can be written in it; SystemExit says why not."""
    if not str(output_dir).strip():
        raise SystemExit(f"{option} is empty: name a folder for what the run writes")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"{option} {out} is a file: name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise SystemExit(f"{option} {out} cannot be written ({error.strerror}): choose another folder") from None
    return out
