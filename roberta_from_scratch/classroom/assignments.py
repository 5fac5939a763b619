"""Student versions of the course notebooks, for graded assignments.

    python -m roberta_from_scratch assignments [NOTEBOOK ...] [--output-dir assignments]

The course notebooks carry their exercises in nbgrader's format: reference solutions between ``### BEGIN SOLUTION``
and ``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, and cell
metadata (``grade_id``, ``points``, ``solution``, ``grade``, ``locked``). A student version is what nbgrader's own
preprocessors make of a notebook, run here as plain nbconvert preprocessors (no database, no server): solutions
replaced by ``raise NotImplementedError()`` (written answers by "YOUR ANSWER HERE"), hidden tests removed, outputs
cleared, test cells locked. Its Colab badge points to the student folder. An instructor who runs nbgrader itself
can use the course notebooks as they are (``nbgrader generate_assignment``), except for one thing that nbgrader
does not know about:

**Answers off the page.** A lesson cell that shows the code an exercise asks for carries, in its metadata
(``"rfs": {"student_source": ...}``), the source that replaces it in the student version: the same step done with
the package (so the rest of the lesson still runs), and a comment that points to the exercise. The prose around it
stays. ``tests/test_assignments.py`` checks that no distinctive line of any reference solution is left anywhere in
a student version.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..course.notebooks import _BADGE, ASSIGNMENT_DIR, NOTEBOOK_DIR, badge, notebook_text

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
STUDENT_KEY = "rfs"  # cell metadata: {"student_source": the cell's source in the student version}


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def has_exercises(nb) -> bool:
    return any(nbgrader_meta(cell).get("grade_id") for cell in nb["cells"])


def exercise_notebooks(folder: str | os.PathLike = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks that hold exercises, in order."""
    return [path for path in sorted(Path(folder).glob("*.ipynb"))
            if has_exercises(json.loads(path.read_text(encoding="utf-8")))]


def solution_lines(nb) -> list[str]:
    """Every line of every solution region (a whole written-answer cell counts as one region)."""
    lines = []
    for cell in nb["cells"]:
        if not nbgrader_meta(cell).get("solution"):
            continue
        source = "".join(cell["source"]).splitlines()
        if cell["cell_type"] == "markdown" and not any(BEGIN_SOLUTION in line for line in source):
            lines += source
            continue
        inside = False
        for line in source:
            if BEGIN_SOLUTION in line:
                inside = True
            elif END_SOLUTION in line:
                inside = False
            elif inside:
                lines.append(line)
    return [line for line in lines if line.strip()]


def student_version(path: str | os.PathLike):
    """The student version of one notebook, as an nbformat node."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, LockCells

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if not has_exercises(nb):
        raise ValueError(f"{path} has no exercises (no cell with nbgrader metadata): nothing to hand out")
    resources: dict = {}
    # ClearOutput also drops the execution timestamps, so that a student version depends only on the sources
    clear_output = ClearOutput(remove_metadata_fields={"collapsed", "scrolled", "execution"})
    for preprocessor in (ClearSolutions(), ClearHiddenTests(), clear_output, LockCells()):
        nb, resources = preprocessor.preprocess(nb, resources)
    for cell in nb.cells:  # answers off the page: the lesson's own code for an exercise, replaced
        replacement = cell.metadata.pop(STUDENT_KEY, {}).get("student_source")
        if replacement is not None:
            cell.source = replacement
    # The reference run's widget states (progress bars with its timings) are not the student's, and would make the
    # student version depend on the last execution of the course notebook, not only on its sources.
    nb.metadata.pop("widgets", None)
    first = nb.cells[0]
    first.source = _BADGE.sub(badge(path.name, folder=ASSIGNMENT_DIR), first.source)
    return nb


def _write_atomically(path: Path, text: str) -> None:
    from ..files import atomic_write

    atomic_write(path, text)


def build(notebooks: list[str | os.PathLike] | None = None, output_dir: str | os.PathLike = ASSIGNMENT_DIR
          ) -> list[Path]:
    """Write the student version of each notebook (default: every course notebook with exercises)."""
    paths = [Path(p) for p in notebooks] if notebooks else exercise_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebook: {', '.join(missing)}")
    written = []
    for path in paths:
        target = Path(output_dir) / path.name
        _write_atomically(target, notebook_text(student_version(path)))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch assignments",
                                     description="Write the student versions of the course notebooks.")
    parser.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/ that has exercises")
    parser.add_argument("--output-dir", default=ASSIGNMENT_DIR)
    args = parser.parse_args(argv)
    try:
        written = build(args.notebooks, args.output_dir)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
