"""Autograder for the course's exercises.

    python -m roberta_from_scratch.grade NOTEBOOK [--source COURSE_NOTEBOOK] [--json] [--timeout 300] [--scale smoke]

Grades a completed student notebook the way nbgrader's autograder does, without its database: every test cell
(and every other locked cell) is put back from the course notebook, hidden tests included, so edits to the tests
do not count; the notebook then runs top to bottom in a fresh kernel, cell by cell, with a time limit per cell. A
test cell that runs without an error earns its points. An exception or a timeout stops only the cell where it
happens: the kernel is interrupted if need be, restarted and brought back to where it was if it died, and the
cells after it still run, so each failure costs only the exercises that depend on it. Written answers are listed
for grading by hand.

The course notebook defaults to ``notebooks/<same name>`` in the current directory or in the repository this
package sits in. ``--json`` prints the result for a learning-management system instead of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .assignments import nbgrader_meta
from .course import NOTEBOOK_DIR
from .settings import SCALES

PASSED, FAILED, TIMEOUT, MISSING, MANUAL = "passed", "failed", "timeout", "missing", "graded by hand"
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
    other_errors: list[str] = field(default_factory=list)  # errors outside the test cells, for the instructor

    @property
    def score(self) -> float:
        return sum(e.score or 0 for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.points for e in self.exercises if e.status != MANUAL)

    @property
    def manual_points(self) -> float:
        return sum(e.points for e in self.exercises if e.status == MANUAL)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score, manual_points=self.manual_points)
        return json.dumps(data, indent=2)

    def table(self) -> str:
        width = max([len(e.grade_id) for e in self.exercises] + [8])
        lines = [f"{self.notebook}: graded at the {self.scale} scale in {self.seconds:.0f} s", "",
                 f"{'exercise':{width}}  points  score  result", f"{'-' * width}  ------  -----  ------"]
        for e in self.exercises:
            score = "-" if e.score is None else f"{e.score:g}"
            result = e.status + (f": {e.message}" if e.message else "")
            lines.append(f"{e.grade_id:{width}}  {e.points:6g}  {score:>5}  {result}")
        lines += ["", f"automatic score: {self.score:g} / {self.max_score:g}"]
        if self.manual_points:
            lines.append(f"written answers, to grade by hand: {self.manual_points:g} points")
        lines += [f"note: {error}" for error in self.other_errors]
        return "\n".join(lines)


def default_source(student: Path) -> Path:
    """``notebooks/<name>`` in the current directory, else in the checkout this package sits in."""
    candidates = [Path.cwd() / NOTEBOOK_DIR / student.name,
                  Path(__file__).resolve().parent.parent / NOTEBOOK_DIR / student.name]
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != student.resolve():
            return candidate
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no course notebook named {student.name} in ./{NOTEBOOK_DIR} or next to the package: "
                            "pass it with --source")


def _read(path: Path, what: str):
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds for a file that is not a notebook
        raise ValueError(f"{what} {path} is not a readable notebook ({error.__class__.__name__}: {error})") from None


def restore_locked_cells(student, source):
    """The student's notebook with every locked cell (tests, statements) replaced by the course notebook's, hidden
    tests included, and outputs cleared. Returns (notebook, {grade id: course cell} of the graded cells the
    student deleted)."""
    import copy

    by_id = {nbgrader_meta(c)["grade_id"]: c for c in source.cells if nbgrader_meta(c).get("grade_id")}
    if not any(nbgrader_meta(c).get("grade") for c in by_id.values()):
        raise ValueError("the course notebook has no graded cells: is it the right notebook?")
    nb = copy.deepcopy(student)
    seen = set()
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id in by_id:
            seen.add(grade_id)
            original = by_id[grade_id]
            if nbgrader_meta(original).get("locked"):
                cell.source = original.source
                cell.cell_type = original.cell_type
            cell.metadata["nbgrader"] = dict(nbgrader_meta(original))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    missing = {g: c for g, c in by_id.items() if nbgrader_meta(c).get("grade") and g not in seen}
    return nb, missing


def _error_text(error) -> str:
    name, value = getattr(error, "ename", ""), getattr(error, "evalue", "")
    text = f"{name}: {value}" if value else name or str(error).strip().splitlines()[-1]
    return text if len(text) <= 200 else text[:197] + "..."


def execute(nb, directory: Path, timeout: int) -> dict[int, str | None]:
    """Run every code cell in a fresh kernel; returns, per cell index, None (ran) or the error it raised."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False, interrupt_on_timeout=True,
                            error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {timeout} s",
                                              "traceback": []},
                            resources={"metadata": {"path": str(directory)}})
    results: dict[int, str | None] = {}
    client.reset_execution_trackers()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
                results[index] = None
            except CellExecutionError as error:
                results[index] = _error_text(error)
            except DeadKernelError:
                results[index] = "the kernel died (the process crashed or ran out of memory)"
                _restart_and_replay(client, nb, index, results)
    return results


def _restart_and_replay(client, nb, failed: int, results: dict) -> None:
    """After a crash, start a new kernel and run again the cells before ``failed`` that had run without error, so
    the cells after it find the state they expect."""
    from nbclient.exceptions import CellExecutionError

    from jupyter_core.utils import run_sync

    run_sync(client.km.restart_kernel)(now=True)  # the same connection: the client's channels carry on
    run_sync(client.kc.wait_for_ready)(timeout=60)
    for index, cell in enumerate(nb.cells[:failed]):
        if cell.cell_type == "code" and results.get(index) is None:
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:
                pass


def grade(student_path: str | os.PathLike, source_path: str | os.PathLike | None = None, timeout: int = 300,
          scale: str | None = "smoke") -> GradeReport:
    """Grade one notebook; see the module's docstring."""
    student_path = Path(student_path)
    student = _read(student_path, "the notebook to grade")
    source_path = Path(source_path) if source_path else default_source(student_path)
    source = _read(source_path, "the course notebook")
    nb, missing = restore_locked_cells(student, source)
    previous = {k: os.environ.get(k) for k in ("RFS_SCALE", "MPLBACKEND")}
    if scale:
        os.environ["RFS_SCALE"] = scale
    os.environ["MPLBACKEND"] = "Agg"  # figures are not shown while grading
    start = time.perf_counter()
    try:
        results = execute(nb, student_path.resolve().parent, timeout)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    report = GradeReport(student_path.name, os.environ.get("RFS_SCALE", scale or "default"),
                         time.perf_counter() - start)
    graded = set()
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not meta.get("grade"):
            if cell.cell_type == "code" and results.get(index):
                report.other_errors.append(f"cell {index} ({meta.get('grade_id') or 'lesson'}): {results[index]}")
            continue
        grade_id, points = meta["grade_id"], float(meta.get("points", 0))
        graded.add(grade_id)
        name = grade_id.removesuffix(TESTS_SUFFIX)
        if meta.get("solution") or cell.cell_type != "code":
            report.exercises.append(Exercise(name, points, None, MANUAL))
        elif results.get(index) is None:
            report.exercises.append(Exercise(name, points, points, PASSED))
        else:
            timed_out = results[index].startswith("Timeout: ")
            message = results[index].removeprefix("Timeout: ")
            report.exercises.append(Exercise(name, points, 0.0, TIMEOUT if timed_out else FAILED, message))
    for grade_id, cell in missing.items():
        meta = nbgrader_meta(cell)
        written = meta.get("solution") or cell.cell_type != "code"
        report.exercises.append(Exercise(grade_id.removesuffix(TESTS_SUFFIX), float(meta.get("points", 0)),
                                         None if written else 0.0, MANUAL if written else MISSING,
                                         "the cell was deleted"))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.grade",
                                     description="Grade a completed student notebook: score per exercise.")
    parser.add_argument("notebook", help="the student's notebook (.ipynb)")
    parser.add_argument("--source", help="the course notebook with the solutions and hidden tests "
                                         "(default: notebooks/<same name>)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument("--scale", default="smoke", choices=[*SCALES, ""], help="RFS_SCALE while grading (default smoke, the fastest); "
                                                         "'' keeps the environment's")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    try:
        report = grade(args.notebook, args.source, args.timeout, args.scale or None)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(report.to_json() if args.json else report.table())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
