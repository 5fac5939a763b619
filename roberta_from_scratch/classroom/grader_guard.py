"""What the autograder installs in a student's kernel before any student code runs (``grade.py``).

A snapshot of the tools that the test cells rely on: the functions and classes of ``builtins``, ``math``, the parts
of PyTorch and NumPy that tests compare with (``torch``, ``torch.testing``, ``torch.nn``, ``torch.nn.functional``,
``torch.optim``, ``numpy``, ``numpy.testing``), ``transformers``' RoBERTa module, this package, and the IPython
machinery that runs a cell (its input and AST transformers, custom exception handlers, event callbacks, the
shell's and kernel's methods). ``Guard.check()`` puts back whatever differs from the snapshot (a replaced function,
a function whose code was swapped, a new method that shadows an inherited one, a module replaced in
``sys.modules``) and returns the names it had to restore.

Results that tests compare must be plain: ``plain(value)`` returns its argument when it is made only of exact
``torch.Tensor``s (and PyTorch's own parameters and buffers), NumPy arrays and scalars, and Python's own numbers, strings, ``None``, tuples, lists and dicts of
them, and raises :class:`NotPlain` otherwise; the comparison tools (``torch.testing.assert_close``, ``torch.equal``,
``torch.allclose``, ``numpy.testing.assert_allclose``) are replaced, in the grader's kernel, by versions that call it
on their arguments first, and ``check()`` reports a tensor subclass defined by notebook code as tampering: such a
class can answer every comparison itself (``__torch_function__``, ``__eq__``, ``__bool__``).

The grader calls ``check()`` through the Jupyter protocol's ``user_expressions``, which IPython evaluates without
running any input or AST transformer, before each test cell (so the test runs with the real tools) and after it
(so a test during which the student's code replaced a tool scores 0). This closes the cheap routes. It cannot stop
code in the same process that works against it on purpose (a thread that restores a patch before the check, a hook
that removes itself, writing a module's ``__dict__`` and undoing it, finding the guard itself): see the README's
section for instructors.
"""

from __future__ import annotations

import builtins
import importlib
import sys
import types

SHALLOW = ("builtins", "math", "operator", "functools", "torch", "torch.nn", "torch.nn.functional", "torch.optim",
           "torch.nn.utils", "torch.nn.utils.clip_grad", "torch.optim.adamw", "torch.optim.optimizer",
           "torch.nn.modules.module", "torch.nn.modules.linear", "torch.nn.modules.loss",
           "torch.nn.modules.activation", "torch.nn.modules.normalization", "torch.nn.modules.sparse",
           "torch.nn.modules.dropout", "torch.nn.modules.container", "torch.testing", "torch.testing._comparison",
           "torch.utils.checkpoint", "numpy", "numpy.testing", "IPython.core.interactiveshell", "ipykernel.zmqshell",
           "ipykernel.ipkernel", "ipykernel.kernelbase")
# Snapshotted when a cell first imports them (importing transformers costs seconds a kernel start need not pay);
# a function found there whose code is not transformers' own was replaced before the guard saw it.
LATE = ("transformers.models.roberta.modeling_roberta", "transformers.activations")
NOT_RESTORABLE = "(replaced before the grader saw it)"
UNTRUSTED = "(it can answer any comparison itself: no later test can be trusted)"
PACKAGE = "roberta_from_scratch"  # every submodule of the package, loaded at install time
SHELL_STATE = ("custom_exceptions", "CustomTB", "input_transformer_manager")
SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
TRUSTED_HOOKS = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline")  # libraries that register callbacks
WRAPPING_LIBRARIES = ("torch", "transformers", "numpy", "IPython", "ipykernel")  # that wrap their own functions
_MISSING = object()


def _library_code(function, libraries=TRUSTED_HOOKS) -> bool:
    """Whether ``function``'s code lives in one of ``libraries`` (installed packages), not in a notebook cell."""
    import os

    code = getattr(getattr(function, "__func__", function), "__code__", None)
    if code is None:
        return False
    for name in libraries:
        module = sys.modules.get(name)
        folder = os.path.dirname(getattr(module, "__file__", None) or "") if module else ""
        if folder and os.path.abspath(code.co_filename).startswith(folder + os.sep):
            return True
    return False


def _installed_code(function) -> bool:
    """Whether a function's code is installed code (the standard library, site-packages, this package), not code
    from a notebook cell (IPython compiles cells into temporary files) or an ``exec``'d string."""
    import os
    import site

    filename = os.path.abspath(function.__code__.co_filename)
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(__file__)),  # this package, not its checkout
             *site.getsitepackages(), site.getusersitepackages()}
    return any(filename.startswith(os.path.abspath(r) + os.sep) for r in roots if r)


def _library_wrapper(value, original) -> bool:
    """A library's own wrapper of ``original`` (PyTorch wraps ``Optimizer.step`` with its hooks the first time an
    optimizer is made): code of a trusted library whose ``__wrapped__`` chain reaches the original."""
    seen = 0
    while value is not None and seen < 10:
        if not _library_code(value, WRAPPING_LIBRARIES):
            return False
        value = getattr(value, "__wrapped__", None)
        if value is original:
            return True
        seen += 1
    return False


class NotPlain(TypeError):
    """Raised when a graded result is not a plain value (a tensor subclass, an object with its own ``__eq__``)."""


def plain(value, _depth: int = 0):
    """``value`` itself if it is made only of plain values (see the module docstring), else :class:`NotPlain`."""
    import numpy
    import torch

    kind = type(value)
    if kind in (torch.Tensor, numpy.ndarray, torch.nn.Parameter, getattr(torch.nn, "Buffer", torch.Tensor)):
        if kind is numpy.ndarray and value.dtype.kind == "O":
            raise NotPlain("a NumPy array of Python objects cannot be graded: return numbers")
        return value
    if kind in (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size, range,
                slice) or (isinstance(value, numpy.generic) and kind.__module__ == "numpy"):
        return value
    if kind in (tuple, list, dict, set, frozenset) and _depth < 20:
        for item in (value.items() if kind is dict else value):
            if kind is dict:
                plain(item[0], _depth + 1)
                plain(item[1], _depth + 1)
            else:
                plain(item, _depth + 1)
        return value
    raise NotPlain(f"a result of type {kind.__module__}.{kind.__qualname__} cannot be graded: the tests compare plain "
                   "torch.Tensor objects and Python values only (a subclass could answer a comparison itself)")


def _strict(name: str, function):
    """``function`` with the two values it compares checked by ``plain`` first."""
    import functools

    @functools.wraps(function)
    def strict(*args, **kwargs):
        for value in (*args[:2], *(kwargs[k] for k in COMPARED if k in kwargs)):
            plain(value)
        return function(*args, **kwargs)

    strict.__name__ = name
    return strict


COMPARED = ("actual", "expected", "input", "other", "desired", "x", "y")
STRICT = (("torch.testing", "assert_close"), ("torch", "equal"), ("torch", "allclose"),
          ("numpy.testing", "assert_allclose"), ("numpy.testing", "assert_array_equal"))


def install_strict_comparisons() -> None:
    for module_name, name in STRICT:
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        if getattr(original, "__name__", "") == name and getattr(original, "_rfs_strict", False):
            continue
        strict = _strict(name, original)
        strict._rfs_strict = True
        setattr(module, name, strict)


def foreign_tensor_classes() -> list[str]:
    """Subclasses of torch.Tensor (or NumPy's ndarray) with a method written in a notebook, not in installed code."""
    import numpy
    import torch

    found, stack, seen = [], [torch.Tensor, numpy.ndarray], set()
    while stack:
        cls = stack.pop()
        for sub in type.__subclasses__(cls):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            stack.append(sub)
            for value in vars(sub).values():
                function = getattr(value, "__func__", value)
                function = getattr(function, "fget", function)
                if isinstance(function, types.FunctionType) and not _installed_code(function):
                    found.append(f"tensor subclass {sub.__qualname__} defined by the notebook {UNTRUSTED}")
                    break
    return found


def _is_tool(value) -> bool:
    return callable(value) or isinstance(value, (staticmethod, classmethod, property))


class Guard:
    def __init__(self, shell=None, extra_modules: tuple[str, ...] = ()):
        for name in (*SHALLOW, *extra_modules):
            try:
                importlib.import_module(name)
            except Exception:  # an optional library that is not installed: nothing to protect
                pass
        package = importlib.import_module(PACKAGE)
        for info in __import__("pkgutil").iter_modules(package.__path__):
            try:
                importlib.import_module(f"{PACKAGE}.{info.name}")
            except Exception:
                pass
        names = [n for n in list(sys.modules) if n in SHALLOW or n in extra_modules or n == PACKAGE
                 or n.startswith(PACKAGE + ".")]
        self.modules = {n: sys.modules[n] for n in names if isinstance(sys.modules[n], types.ModuleType)}
        self.saved: list[tuple[str, object, dict]] = []  # (label, module or class, {name: tool})
        self.code: list[tuple[str, types.FunctionType, tuple]] = []  # (label, function, its code and defaults)
        seen: set[int] = set()
        for module_name, module in self.modules.items():
            self._save(module_name, module, seen)
            for key, value in list(vars(module).items()):
                if isinstance(value, type) and getattr(value, "__module__", None) == module_name:
                    self._save(f"{module_name}.{key}", value, seen)
        import torch

        self._save("torch.Tensor", torch.Tensor, seen)
        self._save("torch._C.TensorBase", torch._C.TensorBase, seen)
        self.seen = seen
        self.late = [name for name in LATE if name not in self.modules]
        for name in list(self.late):
            if name in sys.modules:  # already imported: snapshot it now
                self._adopt(name)
        self.shell = shell
        if shell is not None:
            self.shell_state = {k: getattr(shell, k, _MISSING) for k in SHELL_STATE}
            self.shell_lists = {k: list(getattr(shell, k, [])) for k in SHELL_LISTS}
            self.shell_dict = set(vars(shell))
            manager = getattr(shell, "input_transformer_manager", None)
            self.manager_lists = {k: list(v) for k, v in vars(manager).items() if isinstance(v, list)} if manager else {}
            self.events = {k: list(v) for k, v in shell.events.callbacks.items()}
            for cls in type(shell).__mro__:
                if cls is not object:
                    self._save(f"shell class {cls.__name__}", cls, seen)
            kernel = getattr(shell, "kernel", None)
            if kernel is not None:
                for cls in type(kernel).__mro__:
                    if cls is not object:
                        self._save(f"kernel class {cls.__name__}", cls, seen)

    def _save(self, label: str, owner, seen: set[int]) -> None:
        if id(owner) in seen:
            return
        seen.add(id(owner))
        tools = {k: v for k, v in vars(owner).items() if _is_tool(v)}
        self.saved.append((label, owner, tools))
        for key, value in tools.items():
            function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if isinstance(function, types.FunctionType):
                self.code.append((f"{label}.{key}", function, (function.__code__, function.__defaults__,
                                                               function.__kwdefaults__)))

    def _adopt(self, name: str) -> list[str]:
        """Snapshot a LATE module that a cell imported; return its functions that are not the library's own."""
        module = sys.modules[name]
        self.late.remove(name)
        self.modules[name] = module
        start = len(self.saved)
        self._save(name, module, self.seen)
        for key, value in list(vars(module).items()):
            if isinstance(value, type) and getattr(value, "__module__", None) == name:
                self._save(f"{name}.{key}", value, self.seen)
        foreign = []
        for label, owner, tools in self.saved[start:]:
            for key, value in tools.items():
                function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if isinstance(function, types.FunctionType) and not _installed_code(function):
                    foreign.append(f"{label}.{key} {NOT_RESTORABLE}")
        return foreign

    def check(self) -> list[str]:
        """Put back every tool that differs from the snapshot; return what had been changed."""
        changed = []
        for name in [n for n in self.late if isinstance(sys.modules.get(n), types.ModuleType)]:
            changed += self._adopt(name)
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                sys.modules[name] = module
                changed.append(f"sys.modules[{name!r}]")
        for label, owner, tools in self.saved:
            current = vars(owner)
            for key, value in tools.items():  # a deleted tool only makes the tests fail: left as it is
                if current.get(key, value) is not value:
                    if _library_wrapper(current[key], value):
                        tools[key] = current[key]  # the library's own wrapping: the new original
                        continue
                    try:
                        setattr(owner, key, value)
                        changed.append(f"{label}.{key}")
                    except (AttributeError, TypeError):
                        pass
            if isinstance(owner, type):
                for key in [k for k in list(current) if k not in tools and _is_tool(current[k])]:
                    inherited = [vars(base)[key] for base in owner.__mro__[1:] if key in vars(base)]
                    if inherited:  # shadows an inherited method
                        if _library_wrapper(current[key], inherited[0]):
                            tools[key] = current[key]
                            continue
                        try:
                            delattr(owner, key)
                            changed.append(f"{label}.{key} (added)")
                        except (AttributeError, TypeError):
                            pass
        for label, function, (code, defaults, kwdefaults) in self.code:
            if (function.__code__, function.__defaults__, function.__kwdefaults__) != (code, defaults, kwdefaults):
                function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults
                changed.append(f"{label} (its code)")
        if self.shell is not None:
            changed += self._check_shell()
        return changed + foreign_tensor_classes()

    def _check_shell(self) -> list[str]:
        shell, changed = self.shell, []
        for key, value in self.shell_state.items():
            if getattr(shell, key, _MISSING) is not value:
                setattr(shell, key, value)
                changed.append(f"shell.{key}")
        for key, value in self.shell_lists.items():
            if list(getattr(shell, key, [])) != value:
                getattr(shell, key)[:] = value
                changed.append(f"shell.{key}")
        manager = shell.input_transformer_manager
        for key, value in self.manager_lists.items():
            if getattr(manager, key, None) != value:
                setattr(manager, key, list(value))
                changed.append(f"shell.input_transformer_manager.{key}")
        for key in [k for k in list(vars(shell)) if k not in self.shell_dict]:
            if callable(vars(shell)[key]) and hasattr(type(shell), key):  # an instance method shadowing the class's
                delattr(shell, key)
                changed.append(f"shell.{key}")
        for key, functions in shell.events.callbacks.items():  # a post_run_cell hook can erase a cell's error
            added = [f for f in functions if f not in self.events.get(key, []) and not _library_code(f)]  # the inline backend registers one
            if added:
                functions[:] = [f for f in functions if f not in added]
                changed.append(f"shell.events[{key!r}]")
        return changed


def install(name: str) -> str:
    """Install a Guard as ``builtins.<name>`` (reachable from any namespace, and not cleared by ``%reset``);
    return the scale the kernel runs at, for the report."""
    from ..settings import get_scale

    from IPython import get_ipython  # not builtins.get_ipython: IPython puts it there only while a cell runs

    shell = get_ipython()
    install_strict_comparisons()  # before the snapshot: the strict versions are what the guard puts back
    setattr(builtins, name, Guard(shell))
    return get_scale().name
