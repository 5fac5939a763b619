"""Autograder for the course's exercises.

    python -m roberta_from_scratch grade NOTEBOOK [--source COURSE_NOTEBOOK] [--json] [--timeout 300]
        [--deadline 1800] [--scale smoke] [--memory-gb 16]

Grades a completed student notebook the way nbgrader's autograder does, without its database. The submission is
hostile input, so what is graded comes from the course notebook alone: its graded cells, their ids, points and
tests (hidden tests included); every locked cell is put back from it, graded cells that the course does not define
are ignored (and listed), a graded cell that appears twice counts once. The notebook then runs top to bottom in a
fresh kernel, cell by cell, with a time limit per cell and a deadline for the whole notebook. Before each test cell
the grader's guard (``grader_guard.py``) puts back the tools the tests rely on, if student code replaced them; a
test during which they were replaced scores 0. A test cell that runs without an error earns its points. An
exception or a timeout stops only the cell where it happens: the kernel is interrupted, restarted if it died or
ignores the interrupt, and brought back to where it was, and the cells after it still run, so each failure costs
only the exercises that depend on it. Written answers are listed for grading by hand.

The kernel is confined behind an operating-system boundary (``sandbox.py``, with bubblewrap): new user, network,
PID and IPC namespaces and its own session; the system, the Python environment and this package read-only; the
course notebooks (reference solutions, hidden tests) not visible at all; a private, empty HOME (so IPYTHONDIR) and
/tmp, made fresh for each kernel; a working folder and a copy of the grader's data folder made fresh for each
submission; an environment
without the grader's secrets; limits on CPU time, memory, processes, file size and output. Where bubblewrap cannot
confine (not installed, or no unprivileged user namespaces), the grader refuses to grade, unless told
``--unconfined``, which the report then prints. Results that the tests compare must be plain tensors or plain
Python values (``grader_guard.plain``): a tensor subclass that answers every comparison itself scores 0.

The course notebook defaults to ``notebooks/<same name>`` in the current directory or in the checkout this package
sits in, never the submission itself; a submission that is its own course notebook is refused.
``--json`` prints the result for a learning-management system instead of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .assignments import nbgrader_meta
from .grader_guard import NOT_RESTORABLE, UNTRUSTED
from ..course.notebooks import NOTEBOOK_DIR
from ..settings import SCALES

PASSED, FAILED, TIMEOUT, MISSING, MANUAL = "passed", "failed", "timeout", "missing", "graded by hand"
TAMPERED = "tampering"
KERNEL_DIED = "the kernel died (the process crashed, ran out of memory or hit a resource limit)"
TESTS_SUFFIX = "-tests"


@dataclass
class Exercise:
    grade_id: str
    points: float
    score: float | None  # None for a written answer, graded by hand
    status: str
    message: str = ""


@dataclass
class GradeReport:
    notebook: str
    scale: str
    seconds: float
    exercises: list[Exercise] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)  # errors outside the test cells, their kind only
    details: list[str] = field(default_factory=list)  # the same errors in full, for the instructor (--details)
    confinement: str = ""  # how the kernel was confined

    @property
    def score(self) -> float:
        return sum(e.score or 0 for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.points for e in self.exercises if e.status != MANUAL)

    @property
    def manual_points(self) -> float:
        return sum(e.points for e in self.exercises if e.status == MANUAL)

    def to_json(self, details: bool = False) -> str:
        data = asdict(self)
        if not details:
            del data["details"]
        data.update(score=self.score, max_score=self.max_score, manual_points=self.manual_points)
        return json.dumps(data, indent=2)

    def table(self, details: bool = False) -> str:
        width = max([len(e.grade_id) for e in self.exercises] + [8])
        lines = [f"{self.notebook}: graded at the {self.scale} scale in {self.seconds:.0f} s",
                 f"confinement: {self.confinement}", "",
                 f"{'exercise':{width}}  points  score  result", f"{'-' * width}  ------  -----  ------"]
        for e in self.exercises:
            score = "-" if e.score is None else f"{e.score:g}"
            result = e.status + (f": {e.message}" if e.message else "")
            lines.append(f"{e.grade_id:{width}}  {e.points:6g}  {score:>5}  {result}")
        lines += ["", f"automatic score: {self.score:g} / {self.max_score:g}"]
        if self.manual_points:
            lines.append(f"written answers, to grade by hand: {self.manual_points:g} points")
        lines += [f"note: {error}" for error in self.other_errors]
        if details:
            lines += [f"detail: {error}" for error in self.details]
        return "\n".join(lines)


def default_source(student: Path) -> Path:
    """``notebooks/<name>`` in the current directory, else in the checkout this package sits in; never the
    submission itself (a plain pip install has no checkout: then the instructor names it with --source)."""
    candidates = [Path.cwd() / NOTEBOOK_DIR / student.name,
                  Path(__file__).resolve().parents[2] / NOTEBOOK_DIR / student.name]
    for candidate in candidates:
        if candidate.is_file() and not _same_file(candidate, student):
            return candidate
    raise FileNotFoundError(f"no course notebook named {student.name} in ./{NOTEBOOK_DIR} or next to the package "
                            "(other than the submission itself): pass it with --source")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


class Unconfined(RuntimeError):
    """Raised when the grader cannot confine the kernel and was not told to grade unconfined."""


def _read(path: Path, what: str):
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds for a file that is not a notebook
        raise ValueError(f"{what} {path} is not a readable notebook ({error.__class__.__name__}: {error})") from None


def restore_locked_cells(student, source):
    """The notebook to run: the student's cells, with what is graded taken from the course notebook alone.

    Every locked cell (tests, statements) is replaced by the course notebook's, hidden tests included; each graded
    cell keeps the course notebook's metadata (its id and points); a course cell that appears several times counts
    once (a duplicated locked cell is dropped, a duplicated solution runs as ordinary code); nbgrader metadata that
    the course notebook does not define is removed, so such a cell runs but earns nothing. Outputs are cleared.
    Returns (notebook, {grade id: course cell} of the graded cells the student deleted, [what was not part of the
    assignment or was duplicated, for the report])."""
    import copy

    by_id = {nbgrader_meta(c)["grade_id"]: c for c in source.cells if nbgrader_meta(c).get("grade_id")}
    if not any(nbgrader_meta(c).get("grade") for c in by_id.values()):
        raise ValueError("the course notebook has no graded cells: is it the right notebook?")
    nb = copy.deepcopy(student)
    seen, kept, ignored = set(), [], []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id in by_id and grade_id not in seen:
            seen.add(grade_id)
            original = by_id[grade_id]
            if nbgrader_meta(original).get("locked"):
                cell.source = original.source
                cell.cell_type = original.cell_type
            cell.metadata["nbgrader"] = dict(nbgrader_meta(original))
        elif "nbgrader" in cell.get("metadata", {}):
            del cell.metadata["nbgrader"]
            if grade_id in by_id:
                ignored.append(f"cell {index} repeats {grade_id!r}: graded once"
                               + ("; the copy was dropped" if nbgrader_meta(by_id[grade_id]).get("locked") else ""))
                if nbgrader_meta(by_id[grade_id]).get("locked"):
                    continue
            elif meta.get("grade") or meta.get("points"):
                ignored.append(f"cell {index} ({grade_id or 'no id'!s}, {meta.get('points', 0)} points): not part of "
                               "the assignment, ignored")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        kept.append(cell)
    nb.cells = kept
    missing = {g: c for g, c in by_id.items() if nbgrader_meta(c).get("grade") and g not in seen}
    return nb, missing, ignored


def _error_text(error) -> str:
    name, value = getattr(error, "ename", ""), getattr(error, "evalue", "")
    text = f"{name}: {value}" if value else name or str(error).strip().splitlines()[-1]
    text = " ".join(text.split())  # one line in the table
    return text if len(text) <= 200 else text[:197] + "..."


def _error_kind(text: str) -> str:
    """An ordinary cell's error, reduced to its kind when that is one of Python's own (a student's code chooses
    the rest, which would make the report a channel back to the student)."""
    import builtins

    kind = text.partition(":")[0].strip()
    if text == KERNEL_DIED or kind in ("Timeout", "Deadline"):
        return text
    known = isinstance(getattr(builtins, kind, None), type) and issubclass(getattr(builtins, kind), BaseException)
    return f"{kind if known else 'an exception'} (message withheld)"


# ----------------------------------------------------------------------------------------------- confinement

# Variables a kernel may inherit; everything else (tokens, credentials, cloud keys) is dropped.
ENV_KEEP = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME")
ENV_KEEP_PREFIXES = ("LC_", "RFS_")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")
OUTPUT_BYTES = 1_000_000  # output kept per cell


def kernel_environment(environ=None, scale: str | None = None) -> dict[str, str]:
    """The grader's environment reduced to what a kernel needs: no variable outside ENV_KEEP, none whose name
    says it holds a secret, the scale to grade at, and a non-interactive plotting backend."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if (k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)) and not any(w in k.upper() for w in SECRET_WORDS)}
    if scale:
        env["RFS_SCALE"] = scale
    env["MPLBACKEND"] = "Agg"  # figures are not shown while grading
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass
class Limits:
    """Per kernel: CPU seconds, address space, processes and threads of the user, the size of a written file."""

    cpu_seconds: int | None = None  # None: the deadline times the cores (set by grade())
    memory_bytes: int = 16 * 2**30
    processes: int = 4096
    file_bytes: int = 2 * 2**30

    def describe(self) -> str:
        return (f"limits per kernel: {self.cpu_seconds} CPU s, {self.memory_bytes / 2**30:g} GiB of address space, "
                f"{self.processes} processes and threads, {self.file_bytes / 2**30:g} GiB per file")


def _kernel_manager(limits: Limits, workdir: Path, confined: bool, env: dict[str, str]):
    """A kernel manager whose kernel starts confined (``sandbox.confined_command``), or, with ``confined=False``,
    under the resource limits alone. The kernel is interrupted by a message on its control channel, which works
    across the PID namespace (a signal to bwrap would not reach it)."""
    from jupyter_client import AsyncKernelManager

    from .sandbox import confined_command

    class ConfinedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            inner = [sys.executable, "-m", "roberta_from_scratch.classroom.sandbox", "--memory-bytes", str(limits.memory_bytes),
                     "--processes", str(limits.processes), "--file-bytes", str(limits.file_bytes),
                     "--log", str(workdir / "kernel.log")]
            if limits.cpu_seconds:
                inner += ["--cpu-seconds", str(limits.cpu_seconds)]
            inner += ["--", *command]
            if not confined:
                return inner
            return confined_command(inner, writable=[workdir], workdir=workdir / "work", env=env)

    # Unix sockets, so that a kernel without a network still reaches the grader.
    km = ConfinedKernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"),
                               connection_file=str(workdir / "kernel.json"))
    km.kernel_spec.interrupt_mode = "message"
    return km


# ----------------------------------------------------------------------------------------------- running


@dataclass
class Run:
    """What executing the notebook produced: per code cell None (ran) or the error; notes for the instructor."""

    results: dict[int, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scale: str = "unknown"


class _Kernel:
    """A kernel with the grader's guard installed, restarted (and its state replayed) when it dies or hangs."""

    def __init__(self, client):
        self.client = client
        self.guard = "_rfs_guard_" + secrets.token_hex(8)  # a name that student code cannot know in advance

    def request(self, expressions: dict[str, str], timeout: float = 60) -> dict:
        """Evaluate expressions in the kernel through user_expressions, which IPython runs without input or AST
        transformers; returns {name: value} or raises RuntimeError with the kernel's error."""
        import ast

        from jupyter_core.utils import run_sync

        reply = run_sync(self.client.kc.execute_interactive)("", silent=True, store_history=False,
                                                              user_expressions=expressions, timeout=timeout)
        values = {}
        for name, value in reply["content"].get("user_expressions", {}).items():
            if value.get("status") != "ok":
                raise RuntimeError(f"{value.get('ename')}: {value.get('evalue')}")
            values[name] = ast.literal_eval(value["data"]["text/plain"])
        if set(values) != set(expressions):
            raise RuntimeError("the kernel did not answer")
        return values

    def install(self) -> str:
        return self.request({"scale": f"__import__('roberta_from_scratch.classroom.grader_guard', fromlist=['install'])"
                                      f".install({self.guard!r})"}, timeout=120)["scale"]

    def check(self) -> list[str] | None:
        """What the guard had to put back (a list, empty when nothing was touched), or None when it could not
        run (the kernel was tampered with beyond repair, or did not answer)."""
        try:
            return list(self.request({"changed": f"{self.guard}.check()"})["changed"])
        except Exception:
            return None

    def responsive(self, seconds: float = 10) -> bool:
        try:
            self.request({"alive": "1"}, timeout=seconds)
            return True
        except Exception:
            return False

    def restart(self) -> None:
        from jupyter_core.utils import run_sync

        run_sync(self.client.km.restart_kernel)(now=True)  # SIGKILL: an ignored interrupt does not stop it
        run_sync(self.client.kc.wait_for_ready)(timeout=60)
        self.install()


def execute(nb, directory: Path, timeout: int, deadline: float | None = None, limits: Limits | None = None,
            env: dict[str, str] | None = None, confined: bool = True) -> Run:
    """Run every code cell in a fresh, confined kernel; see the module's docstring. ``deadline`` (seconds) bounds
    the whole run: cells after it are not run and get the reason as their error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    limits = limits or Limits()
    env = env if env is not None else kernel_environment()
    km = _kernel_manager(limits, directory, confined, env)

    class CappedClient(NotebookClient):
        """Keeps at most OUTPUT_BYTES of output per cell: a cell that prints without end cannot fill the grader's
        memory (its error still counts; the outputs are not part of the grade)."""

        sizes: dict[int, int] = {}

        def output(self, outs, msg, display_id, cell_index):
            size = self.sizes.get(cell_index, 0) + len(json.dumps(msg.get("content", {}), default=str))
            self.sizes[cell_index] = size
            if size > OUTPUT_BYTES and msg["msg_type"] != "error":
                return None
            return super().output(outs, msg, display_id, cell_index)

    client = CappedClient(nb, km=km, timeout=timeout, kernel_name="python3", allow_errors=False,
                            interrupt_on_timeout=True,
                            error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {timeout} s",
                                              "traceback": []},
                            resources={"metadata": {"path": str(directory / "work")}})
    run = Run()
    kernel = _Kernel(client)
    start = time.monotonic()

    def left() -> float:
        return float("inf") if deadline is None else deadline - (time.monotonic() - start)

    def run_cell(index, cell) -> str | None:
        client.timeout = max(1, int(min(timeout, left())))
        try:
            client.execute_cell(cell, index)
            return None
        except CellExecutionError as error:
            text = _error_text(error)
            if text.startswith("Timeout: ") and not kernel.responsive():
                run.notes.append(f"cell {index} ignored the interrupt after its time limit: the kernel was "
                                 "restarted")
                recover(index)
            return text
        except DeadKernelError:
            recover(index)
            return KERNEL_DIED

    def recover(failed: int) -> None:
        """A new kernel, then the cells before ``failed`` that had run without error, run again, so that the
        cells after it find the state they expect."""
        kernel.restart()
        for index, cell in enumerate(nb.cells[:failed]):
            if cell.cell_type == "code" and run.results.get(index) is None and left() > 0:
                if nbgrader_meta(cell).get("grade"):
                    kernel.check()  # as in the first run: the tests replay with the real tools
                client.timeout = max(1, int(min(timeout, left())))
                try:
                    client.execute_cell(cell, index)
                except (CellExecutionError, DeadKernelError):
                    pass
        kernel.check()  # what the replayed cells tampered with is not left for the cells after them

    client.reset_execution_trackers()
    try:
        _run_cells(client, kernel, nb, run, timeout, deadline, left, run_cell, env)
    finally:  # nbclient shuts down only kernels it made itself; this one is ours (confined)
        from jupyter_core.utils import run_sync

        try:
            run_sync(km.shutdown_kernel)(now=True)
        except Exception:
            pass
    return run


def _run_cells(client, kernel, nb, run, timeout, deadline, left, run_cell, env) -> None:
    with client.setup_kernel(env=env):
        run.scale = kernel.install()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if left() <= 0:
                run.results[index] = f"Deadline: the grading deadline of {deadline:g} s had passed"
                continue
            meta = nbgrader_meta(cell)
            is_test = meta.get("grade") and not meta.get("solution")
            if is_test:
                undone = kernel.check()
                if undone is None:
                    run.results[index] = ("Tampering: the kernel no longer answers the grader's check (IPython or "
                                          "the grader's guard was replaced)")
                    continue
                lost = [u for u in undone if u.endswith((NOT_RESTORABLE, UNTRUSTED))]
                if lost:  # a tool replaced before the guard could save it: the test cannot be trusted
                    run.results[index] = "Tampering: " + ", ".join(lost[:4])
                    continue
                if undone:
                    run.notes.append(f"before cell {index} ({meta.get('grade_id')}), put back: "
                                     + ", ".join(undone[:8]) + (" ..." if len(undone) > 8 else ""))
            run.results[index] = run_cell(index, cell)
            if is_test and run.results[index] is None:
                changed = kernel.check()
                if changed is None or changed:
                    what = ", ".join(changed[:8]) if changed else "the grader's check could not run"
                    run.results[index] = f"Tampering: the test's tools were replaced while it ran ({what})"


def _seed_data(target: Path) -> None:
    """A fresh copy of the grader's data folder (the cached corpora and the course's trained models, so that the
    lessons do not rebuild them for every submission), or an empty folder where the grader has none. A copy, not a
    link: what a kernel writes there stays in its submission's sandbox."""
    import shutil

    from ..data import data_dir

    source = data_dir()
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns("*.lock", "tmp*"))
    else:
        target.mkdir()


CONFINED = ("bubblewrap: new user, network, PID and IPC namespaces, its own session; system, Python environment "
            "and package read-only; course notebooks not visible; private HOME and /tmp per kernel; fresh working "
            "folder and copy of the data folder per submission")


def grade(student_path: str | os.PathLike, source_path: str | os.PathLike | None = None, timeout: int = 300,
          scale: str | None = "smoke", deadline: float | None = 1800, limits: Limits | None = None,
          unconfined: bool = False) -> GradeReport:
    """Grade one notebook; see the module's docstring. Raises :class:`Unconfined` where bubblewrap cannot confine
    the kernel; ``unconfined`` grades without confinement (resource limits only), and the report says so."""
    import dataclasses
    import shutil
    import tempfile

    from .sandbox import why_unconfined

    student_path = Path(student_path)
    student = _read(student_path, "the notebook to grade")
    source_path = Path(source_path) if source_path else default_source(student_path)
    if _same_file(source_path, student_path):
        raise ValueError(f"{student_path} is the course notebook itself: a submission is never graded against its "
                         "own tests and solutions; name the course notebook with --source")
    source = _read(source_path, "the course notebook")
    nb, missing, ignored = restore_locked_cells(student, source)
    why_not = "asked for" if unconfined else why_unconfined()
    if why_not and not unconfined:
        raise Unconfined(f"cannot confine the student's kernel: {why_not}. Install bubblewrap, or grade with "
                         "--unconfined on a machine you can afford to lose (the report will say so)")
    confined = not unconfined

    limits = limits or Limits()
    if limits.cpu_seconds is None:
        limits = dataclasses.replace(limits, cpu_seconds=int(max(deadline or 3600, 60) * max(1, os.cpu_count() or 1)))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rfs-grade-") as workdir:
        workdir = Path(workdir)
        (workdir / "work").mkdir()
        _seed_data(workdir / "data")
        shutil.copy(student_path, workdir / "work" / student_path.name)  # the kernel works in a copy
        env = kernel_environment(scale=scale)
        env["RFS_DATA_DIR"] = str(workdir / "data")  # a copy: nothing one submission writes reaches the next
        run = execute(nb, workdir, timeout, deadline, limits, env, confined=confined)
    results = run.results
    report = GradeReport(student_path.name, run.scale, time.perf_counter() - start)
    report.other_errors += ignored
    report.other_errors += run.notes
    report.confinement = (f"{CONFINED if confined else f'UNCONFINED (--unconfined: {why_not})'}; environment "
                          f"scrubbed; {limits.describe()}")
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not meta.get("grade"):
            if cell.cell_type == "code" and results.get(index):  # the kind of error only: the text is the
                # student's to choose, and the report goes back to the student
                where = f"cell {index} ({meta.get('grade_id') or 'lesson'}): "
                report.other_errors.append(where + _error_kind(results[index]))
                report.details.append(where + results[index])
            continue
        grade_id, points = meta["grade_id"], float(meta.get("points", 0))
        name = grade_id.removesuffix(TESTS_SUFFIX)
        if meta.get("solution") or cell.cell_type != "code":
            report.exercises.append(Exercise(name, points, None, MANUAL))
        elif results.get(index) is None:
            report.exercises.append(Exercise(name, points, points, PASSED))
        else:
            kind, _, message = results[index].partition(": ")
            status = {"Timeout": TIMEOUT, "Deadline": TIMEOUT, "Tampering": TAMPERED}.get(kind)
            report.exercises.append(Exercise(name, points, 0.0, status or FAILED,
                                             message if status else results[index]))
    for grade_id, cell in missing.items():
        meta = nbgrader_meta(cell)
        written = meta.get("solution") or cell.cell_type != "code"
        report.exercises.append(Exercise(grade_id.removesuffix(TESTS_SUFFIX), float(meta.get("points", 0)),
                                         None if written else 0.0, MANUAL if written else MISSING,
                                         "the cell was deleted"))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch grade",
                                     description="Grade a completed student notebook: score per exercise.")
    parser.add_argument("notebook", help="the student's notebook (.ipynb)")
    parser.add_argument("--source", help="the course notebook with the solutions and hidden tests "
                                         "(default: notebooks/<same name>)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument("--deadline", type=int, default=1800,
                        help="seconds allowed for the whole notebook; later exercises score 0 (default 1800)")
    parser.add_argument("--memory-gb", type=float, default=16, help="address space allowed to the kernel (default 16)")
    parser.add_argument("--details", action="store_true",
                        help="show the full error of every lesson cell that failed (for the instructor: a message "
                             "is the student's to choose, so the report withholds it by default)")
    parser.add_argument("--unconfined", action="store_true",
                        help="grade without bubblewrap's confinement, resource limits only (the report says so)")
    parser.add_argument("--scale", default="smoke", choices=[*SCALES, ""], help="RFS_SCALE while grading (default smoke, the fastest); "
                                                         "'' keeps the environment's")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    if args.deadline < 1 or args.memory_gb <= 0:
        parser.error("--deadline must be at least 1 second and --memory-gb positive")
    limits = Limits(memory_bytes=int(args.memory_gb * 2**30))
    try:
        report = grade(args.notebook, args.source, args.timeout, args.scale or None, args.deadline, limits,
                       unconfined=args.unconfined)
    except (FileNotFoundError, ValueError, Unconfined) as error:
        parser.error(str(error))
    print(report.to_json(args.details) if args.json else report.table(args.details))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
