"""The device audit (``RFS_DEVICE=audit``): a CPU that raises the device errors CUDA would raise.

Most machines that build this course have no GPU, yet most learners run it on one, where a tensor left on the
host, or a device tensor handed to numpy, stops a notebook. On a CPU those bugs are silent: every tensor is on the
one device there is. The audit makes them loud.

Design
------
* The course's device is ``AUDIT_DEVICE``, ``torch.device("cpu", 0)``: a CPU device with an index, which
  compares unequal to the host's ``torch.device("cpu")`` the way ``cuda:0`` does.
* A tensor "on the device" carries a **mark**: its Python object is in a registry of weak references (by identity,
  so marks are never pickled, copied into a checkpoint or kept past the tensor's life). The mark is the audit's
  only notion of place; the memory stays on the CPU.
* :func:`activate` enters a :class:`torch.overrides.TorchFunctionMode` for the rest of the process (idempotent);
  :func:`audited` enters and leaves one, for tests. Every torch function, tensor method and tensor property goes
  through the mode's ``__torch_function__``, which
    - **moves**: ``t.to(AUDIT_DEVICE)`` / ``t.to("cpu:0")`` / ``t.cuda()`` return a marked copy (torch copies
      between ``cpu`` and ``cpu:0`` by itself, as CUDA copies between host and device), a marked tensor moved
      there again is returned as it is; ``.cpu()``, ``.to("cpu")``, ``.to(torch.device("cpu"))`` return an
      unmarked copy; ``.to(other)`` and ``type_as(other)`` follow ``other``'s mark;
    - **modules**: ``nn.Module.to(device)`` sets ``param.data = param.to(device)``; the ``Tensor.data`` setter
      gives the parameter the value's mark, so a module is moved in place as on CUDA, and its buffers are replaced
      by marked copies. ``nn.Parameter(marked)`` stays marked (``nn.Parameter.__new__`` is wrapped while the
      audit runs), so does a gradient read through ``param.grad``;
    - **reports** ``t.device == AUDIT_DEVICE`` for a marked tensor, so ``x.to(param.device)``,
      ``torch.arange(n, device=x.device)`` and ``assert_close``'s device check behave as on CUDA;
    - **factories** (``torch.zeros``, ``torch.tensor``, ``*_like``, ``new_*`` ...) called with
      ``device=AUDIT_DEVICE`` return marked tensors, with ``device="cpu"`` unmarked ones;
    - **propagates**: any other function given a marked tensor marks the new tensors it returns. Mixing marked
      tensors with unmarked tensors of one or more dimensions raises CUDA's ``RuntimeError`` ("Expected all tensors
      to be on the same device ..."). As on CUDA, 0-dim host tensors mix freely; a marked tensor may be indexed with
      host index tensors (``__getitem__``, ``__setitem__``, ``index_put_``), not a host tensor with device indices
      (beyond a 0-dim integer one, which CUDA reads as a number); ``copy_`` copies across; ``view_as``,
      ``expand_as`` and ``reshape_as`` read only the other tensor's shape; in-place operations keep the mark of the
      tensor they write;
    - **numpy**: ``.numpy()`` and ``__array__`` (what ``np.asarray`` and matplotlib call) raise CUDA's
      ``TypeError`` on a marked tensor; ``.item()``, ``.tolist()``, ``float()`` and ``int()`` work, as on CUDA;
    - **generators**: a ``torch.Generator`` used to sample a marked tensor raises CUDA's ``RuntimeError``. torch
      keeps no index on a CPU generator, so even ``torch.Generator(device=device)`` counts as a host one here: the
      portable pattern, which also gives the same numbers on every device, samples on the host and moves the
      result;
    - **patched methods**: a ``torch.Tensor`` method replaced by code outside torch (notebook 08's read counter)
      runs once per call, as without a mode (torch hands a mode the replacement; the mode calls the C method).
* Cost: while nothing is marked a call costs one dictionary look-up and the mode's Python frame; afterwards each
  call walks its arguments once. Measured when the audit was written (one CPU thread, process time): a training
  step of the smoke recipe's model makes about 1,200 torch calls and took 48 ms audited against 43 ms plain.

Where the audit differs from CUDA: ``t.device.type`` is ``"cpu"`` (code branching on ``"cuda"`` takes its CPU
branch; ``RFS_PRECISION`` rehearses the precision paths), ``is_cuda`` is False, ``torch.load(map_location=device)``
and ``safetensors``' ``load_file(device=...)`` give unmarked tensors (move them with ``.to(device)``, which is
portable), tensors created by C++ code and reached without a torch function (hooks' arguments) are unmarked, and
the mode is per thread (Jupyter runs every cell on one thread).
"""

from __future__ import annotations

import contextlib
import threading
import types
import weakref

import torch
from torch.overrides import TorchFunctionMode

AUDIT_DEVICE = torch.device("cpu", 0)  # the audit's stand-in for cuda:0; plain "cpu" (no index) is the host

__all__ = ["AUDIT_DEVICE", "AuditMode", "activate", "active", "audited", "is_marked", "mark"]

_HOST = torch.device("cpu")
_FunctionType = types.FunctionType
_WHY = (f"\n(device audit, RFS_DEVICE=audit: the course device {AUDIT_DEVICE} stands in for cuda:0, and CUDA raises "
        "this error here.")
_MIX_FIX = " Move the host tensors with .to(device), or bring the device ones back with .cpu().)"


# ---------------------------------------------------------------------------------------------------------- marks
class _Ref(weakref.ref):
    __slots__ = ("key",)


_marks: dict[int, _Ref] = {}  # id(tensor) -> weak reference to it: the tensors on the audit's device


def _forget(ref: _Ref) -> None:
    if _marks.get(ref.key) is ref:
        del _marks[ref.key]


def is_marked(t) -> bool:
    """Whether the tensor ``t`` is on the audit's device."""
    ref = _marks.get(id(t))
    return ref is not None and ref() is t


def mark(t: torch.Tensor) -> torch.Tensor:
    """Put ``t`` on the audit's device in place (its memory stays where it is) and return it."""
    key = id(t)
    ref = _marks.get(key)
    if ref is None or ref() is not t:
        ref = _Ref(t, _forget)
        ref.key = key
        _marks[key] = ref
    return t


def _unmark(t) -> None:
    ref = _marks.get(id(t))
    if ref is not None and ref() is t:
        del _marks[id(t)]


def _set_mark(t, on: bool) -> None:
    mark(t) if on else _unmark(t)


def _is_audit_device(device) -> bool:
    if device is None or isinstance(device, int):  # an int names a CUDA index
        return False
    return torch.device(device) == AUDIT_DEVICE


# ---------------------------------------------------------------------------------------------------------- walking
def _walk(items, tensors: list, generators: list) -> None:
    """Collect the tensors and generators in ``items``, looking into lists and tuples (not torch.Size)."""
    for a in items:
        if isinstance(a, torch.Tensor):
            tensors.append(a)
        elif isinstance(a, (list, tuple)):
            if a and type(a) is not torch.Size:
                _walk(a, tensors, generators)
        elif isinstance(a, torch.Generator):
            generators.append(a)


def _mark_new(out, inputs: list) -> None:
    """Mark the tensors in ``out`` that are not among ``inputs`` (an in-place result keeps its own mark)."""
    if isinstance(out, torch.Tensor):
        if not is_marked(out) and not any(out is t for t in inputs):
            mark(out)
    elif isinstance(out, (list, tuple)):
        for o in out:
            _mark_new(o, inputs)


def _unmark_all(out) -> None:
    if isinstance(out, torch.Tensor):
        _unmark(out)
    elif isinstance(out, (list, tuple)):
        for o in out:
            _unmark_all(o)


def _name(func) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__self__", None) or getattr(func, "__objclass__", None)
    if name in ("__get__", "__set__") and owner is not None:
        return f"Tensor.{getattr(owner, '__name__', owner)} ({name.strip('_')})"
    return name


def _mix_error(func, host: torch.Tensor) -> RuntimeError:
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
        f"{_WHY} {_name(func)} was given tensors on the device and a host tensor of shape {tuple(host.shape)}."
        f"{_MIX_FIX}")


def _generator_error(func) -> RuntimeError:
    return RuntimeError(
        f"Expected a 'cuda' device type for generator but found 'cpu'{_WHY} {_name(func)} samples a tensor on the "
        "device with a CPU generator. Sample on the host with the generator and move the result with .to(device) "
        "(the same numbers on every device), or leave the generator out.)")


def _clone(t: torch.Tensor) -> torch.Tensor:
    return t.clone()  # a move between devices copies; clone keeps the autograd graph as a real move does


# ---------------------------------------------------------------------------------------------------------- handlers
def _generic(func, args, kwargs):
    """Every torch function without a handler of its own: factories, propagation, the mixing check."""
    device = kwargs.get("device") if kwargs else None
    if device is not None:  # a factory, or a function told where its result goes
        target = _is_audit_device(device)
        if target:
            if kwargs.get("generator") is not None:
                raise _generator_error(func)
            kwargs = dict(kwargs, device=_HOST)  # the memory stays on the host
        tensors: list = []
        _walk(args, tensors, [])
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and any(out is t for t in tensors):  # e.g. as_tensor(t, device=...)
            if is_marked(out) == target:
                return out
            out = _clone(out)
        if target:
            _mark_new(out, [])
        else:
            _unmark_all(out)
        return out
    if not _marks:  # nothing is on the device: nothing to check or carry
        return func(*args, **kwargs)
    tensors = []
    generators: list = []
    _walk(args, tensors, generators)
    if kwargs:
        _walk(kwargs.values(), tensors, generators)
    on_device = host = None
    for t in tensors:
        if is_marked(t):
            on_device = t
        elif host is None and t.dim() > 0:
            host = t
    if on_device is None:
        return func(*args, **kwargs)
    if host is not None:
        raise _mix_error(func, host)
    if generators:
        raise _generator_error(func)
    out = func(*args, **kwargs)
    _mark_new(out, tensors)
    return out


def _device_get(func, args, kwargs):
    device = func(*args, **kwargs)
    return AUDIT_DEVICE if is_marked(args[0]) else device


def _data_set(func, args, kwargs):
    self, value = args
    func(self, value)
    _set_mark(self, is_marked(value))  # param.data = moved: the parameter moves in place (nn.Module.to)


def _settle(self, out, src: bool, target: bool):
    """The result of a move from ``src`` (marked or not) to ``target``: a copy when the place changes."""
    if out is self:
        if src == target:
            return out
        out = _clone(self)
    _set_mark(out, target)
    return out


def _to(func, args, kwargs):
    self, rest = args[0], args[1:]
    src = is_marked(self)
    other = rest[0] if rest and isinstance(rest[0], torch.Tensor) else kwargs.get("other")
    if isinstance(other, torch.Tensor):
        target = is_marked(other)
    else:
        device = kwargs.get("device")
        if device is None and rest and isinstance(rest[0], (str, torch.device, int)):
            device = rest[0]
        if device is None:  # a dtype or memory-format change stays where it is
            target = src
        else:
            target = _is_audit_device(device)
            if target and src:  # already there: as on CUDA, no copy unless asked for
                if "device" in kwargs:
                    kwargs = dict(kwargs, device=_HOST)
                else:
                    args = (self, _HOST) + tuple(rest[1:])
    return _settle(self, func(*args, **kwargs), src, target)


def _cpu(func, args, kwargs):
    self = args[0]
    return _settle(self, func(*args, **kwargs), is_marked(self), False)


def _cuda(func, args, kwargs):  # no CUDA here: .cuda() moves to the audit's device
    self = args[0]
    return _settle(self, self, is_marked(self), True)


def _type_as(func, args, kwargs):
    self, other = args[0], args[1]
    return _settle(self, func(*args, **kwargs), is_marked(self), is_marked(other))


def _follow_self(func, args, kwargs):
    """view_as, expand_as, reshape_as read only the other tensor's shape; new_tensor copies its data to self's
    device. The result is where ``self`` is; nothing is checked (CUDA checks nothing either)."""
    if kwargs and kwargs.get("device") is not None:
        return _generic(func, args, kwargs)
    out = func(*args, **kwargs)
    if out is not args[0]:
        _set_mark(out, is_marked(args[0]))
    return out


def _to_numpy(func, args, kwargs):
    if is_marked(args[0]):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        f"host memory first.{_WHY} Call .cpu() (or .detach().cpu()) before numpy or matplotlib.)")
    return func(*args, **kwargs)


def _index_check(self, index) -> None:
    """A host tensor indexed with device index tensors raises on CUDA (a 0-dim integer one is read as a number)."""
    if is_marked(self) or not _marks:
        return
    tensors: list = []
    _walk((index,), tensors, [])
    for t in tensors:
        if is_marked(t) and t.dim() > 0:
            raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor (cpu)"
                               f"{_WHY} Index with host indices, or move the indexed tensor with .to(device).)")


def _getitem(func, args, kwargs):
    self = args[0]
    _index_check(self, args[1])
    out = func(*args, **kwargs)
    if is_marked(self) and isinstance(out, torch.Tensor):
        mark(out)
    return out


def _setitem(func, args, kwargs):
    """Writes into ``self``: host indices are fine on a device tensor, and values are copied across."""
    _index_check(args[0], args[1] if len(args) > 1 else kwargs.get("indices"))
    return func(*args, **kwargs)


def _passthrough(func, args, kwargs):  # copy_ copies across devices; the destination keeps its place
    return func(*args, **kwargs)


_T = torch.Tensor
_HANDLERS = {
    _T.device.__get__: _device_get,
    _T.data.__set__: _data_set,
    _T.to: _to,
    _T.cpu: _cpu,
    _T.cuda: _cuda,
    _T.type_as: _type_as,
    _T.view_as: _follow_self,
    _T.expand_as: _follow_self,
    _T.reshape_as: _follow_self,
    _T.new_tensor: _follow_self,
    _T.numpy: _to_numpy,
    _T.__array__: _to_numpy,
    _T.__getitem__: _getitem,
    _T.__setitem__: _setitem,
    _T.index_put_: _setitem,
    _T.index_put: _setitem,
    torch.index_put: _setitem,
    torch.index_put_: _setitem,
    _T.copy_: _passthrough,
    torch._has_compatible_shallow_copy_type: _passthrough,  # metadata only (nn.Module._apply asks it)
    torch.is_same_size: _passthrough,
    _T.is_set_to: _passthrough,
}


_unpatched: dict = {}  # a Python function set on torch.Tensor by code outside torch -> TensorBase's method


def _torch_method(func):
    """The C method a patched ``torch.Tensor`` attribute wraps. For a C method, torch hands the mode whatever
    ``torch.Tensor.<name>`` is now; when code outside torch has replaced it with a wrapper (notebook 08 counts
    ``item`` calls that way), the wrapper has already run once, and calling it again would run it twice. The mode
    calls the method the wrapper called instead, as torch does without a mode."""
    if func not in _unpatched:
        names = [name for name, value in vars(torch.Tensor).items() if value is func]
        base = getattr(torch._C.TensorBase, names[0], None) if names else None
        _unpatched[func] = base if callable(base) else func
    return _unpatched[func]


class AuditMode(TorchFunctionMode):
    """The mode that carries the marks and raises where CUDA would (module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        handler = _HANDLERS.get(func)
        if handler is None:
            if type(func) is _FunctionType and not (func.__module__ or "").startswith("torch"):
                func = _torch_method(func)
                handler = _HANDLERS.get(func, _generic)
            else:
                handler = _generic
        return handler(func, args, kwargs or {})


# ---------------------------------------------------------------------------------------------------------- switches
_original_parameter_new = torch.nn.Parameter.__dict__["__new__"]
_lock = threading.Lock()
_process_mode: AuditMode | None = None
_depth = 0  # how many audit modes are entered (activate counts once)


def _parameter_new(cls, data=None, requires_grad=True):
    out = _original_parameter_new.__get__(None, cls)(cls, data, requires_grad)
    if _marks and data is not None and is_marked(data):  # nn.Parameter(moved) stays on the device
        mark(out)
    return out


def _enter(mode: AuditMode) -> None:
    global _depth
    if _depth == 0:
        torch.nn.Parameter.__new__ = staticmethod(_parameter_new)
    mode.__enter__()
    _depth += 1


def _exit(mode: AuditMode) -> None:
    global _depth
    mode.__exit__(None, None, None)
    _depth -= 1
    if _depth == 0:
        torch.nn.Parameter.__new__ = _original_parameter_new
        _marks.clear()


def active() -> bool:
    """Whether an audit is running in this process."""
    return _depth > 0


def activate() -> None:
    """Run the audit for the rest of the process (``settings.pick_device("audit")`` calls this); idempotent."""
    global _process_mode
    with _lock:
        if _process_mode is None:
            _process_mode = AuditMode()
            _enter(_process_mode)


@contextlib.contextmanager
def audited():
    """The audit inside a ``with`` block (for tests); inside an audit already running it changes nothing. On leaving
    the outermost audit every mark is dropped."""
    if _depth > 0:
        yield AUDIT_DEVICE
        return
    mode = AuditMode()
    _enter(mode)
    try:
        yield AUDIT_DEVICE
    finally:
        _exit(mode)
