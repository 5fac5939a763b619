"""Exercises that build the core: the package's own answer does not count.

The graded exercises of notebooks 01 to 11 ask students to write a central piece (BPE training, the multi-head
forward, the post-LN layer, FULL-SENTENCES packing, AdamW, the finetuning loop, BM25, RoPE, ...) that the package,
or a library, already holds. Their tests call the student's function inside ``implement_yourself(...)``, which replaces each named
implementation by a stand-in that records the call (and runs the original, so the tests go on) for as long as
the test runs; when the block ends, a recorded call raises :class:`ImplementYourself`, so a solution that only
calls it fails, with a message that says whether the tests passed with it:

    with implement_yourself("roberta_from_scratch.tokenizer.bytes_to_unicode"):
        table = bytes_to_unicode()      # the student's function; a call of the package's fails the test at the end

A target is a dotted path, ``module.function`` or ``module.Class.method``; a target in ``__main__`` (a function a
lesson cell defined) is skipped when the notebook does not define it (the student version, or a kernel in which
only the exercise ran). The replacement is installed where the
object lives and wherever the same object is bound under another name: in the package's modules (re-exports) and
in the notebook's own namespace (``from roberta_from_scratch.tokenizer import bytes_to_unicode`` at the top of a
cell). Everything is put back when the block ends, also after an error (which, when a recorded call came first,
becomes the cause of the ImplementYourself).

What it cannot stop: code in the same process can always get at an original object it stored before the test
ran (in a closure, a default argument, a copy of the module), or undo the replacement. It closes the cheap
route, one call to the package; the instructors' section of the README says what remains.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from contextlib import contextmanager
from types import ModuleType

PACKAGE = __name__.split(".")[0]  # roberta_from_scratch: every module of the package, not only this wing


class ImplementYourself(RuntimeError):
    """Raised when a graded solution calls the implementation that the exercise asks the student to write."""


def _resolve(target: str) -> tuple[object, str, object]:
    """``"pkg.mod.Class.attr"`` -> (owner, attribute name, current value), importing the longest module prefix."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"implement_yourself: cannot import {target!r}; give a dotted path such as "
                     "'roberta_from_scratch.tokenizer.bytes_to_unicode'")


def _defined_in_main(target: str) -> bool:
    """Whether ``__main__.<name>`` exists: a notebook's name is only there once its lesson cell has run."""
    main = sys.modules.get("__main__")
    return main is not None and hasattr(main, target.split(".", 1)[1].split(".")[0])


def _recording(target: str, original, calls: list[str]):
    """A stand-in for ``original`` that notes the call and then runs it, so the test goes on to its end."""
    def recorded(*args, **kwargs):
        calls.append(target)
        return original(*args, **kwargs)

    recorded.__name__ = recorded.__qualname__ = target.rpartition(".")[2]
    return recorded


def _verdict(calls: list[str], error: BaseException | None) -> ImplementYourself:
    named = ", ".join(dict.fromkeys(calls))  # each target once, in the order first called (the outcome comes first:
    # graders shorten long messages)
    outcome = ("the tests passed, but with a call of" if error is None else
               f"the tests failed ({type(error).__name__}: {error}), and they called")
    return ImplementYourself(f"{outcome} {named}, which this exercise asks you to write: implement it yourself (a "
                             "solution that calls it earns no points)")


def _namespaces() -> list[dict]:
    """Where a notebook's names live: IPython's user namespace and ``__main__``, and the package's modules."""
    spaces = []
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821  (defined inside IPython only)
        spaces.append(shell.user_ns)
    except NameError:
        pass
    main = sys.modules.get("__main__")
    if isinstance(main, ModuleType):
        spaces.append(vars(main))
    spaces += [vars(m) for name, m in list(sys.modules.items())
               if isinstance(m, ModuleType) and (name == PACKAGE or name.startswith(PACKAGE + "."))]
    unique, seen = [], set()
    for space in spaces:
        if id(space) not in seen:
            seen.add(id(space))
            unique.append(space)
    return unique


@contextmanager
def implement_yourself(*targets: str):
    """Within the block, every call of ``targets`` is recorded and still runs, so the tests go on to their end; when
    the block ends, a recorded call raises :class:`ImplementYourself`, which says whether the tests passed with it.
    See the module docstring."""
    calls: list[str] = []
    restore: list[tuple[object, str, object, bool]] = []  # (owner or namespace, name, original, is a namespace)
    error = None
    try:
        for target in targets:
            if target.startswith("__main__.") and not _defined_in_main(target):
                continue  # a lesson's name the student version (or a kernel that skipped the lesson) lacks
            owner, name, original = _resolve(target)
            raw = inspect.getattr_static(owner, name) if isinstance(owner, type) else original
            if isinstance(raw, (staticmethod, classmethod)):  # keep the kind of method, record its function
                stand_in = type(raw)(_recording(target, raw.__func__, calls))
            else:
                stand_in = _recording(target, original, calls)
            had_own = name in vars(owner) if not isinstance(owner, dict) else True
            restore.append((owner, name, vars(owner).get(name) if had_own else None, had_own))
            setattr(owner, name, stand_in)
            if isinstance(owner, type):
                continue  # a method: every instance, whatever name it was reached by, now finds the stand-in
            for space in _namespaces():
                for key, value in list(space.items()):
                    if value is original:
                        restore.append((space, key, value, True))
                        space[key] = stand_in
        try:
            yield
        except BaseException as exc:
            if not calls:
                raise
            error = exc
    finally:
        for owner, name, original, had_own in reversed(restore):
            if isinstance(owner, dict):
                owner[name] = original
            elif had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # the attribute was inherited: remove the stand-in, the parent's shows again
    if calls:
        raise _verdict(calls, error) from error
