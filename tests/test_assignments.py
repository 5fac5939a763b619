"""Classroom assignments: the student versions hold no solution and no hidden test, unmodified they score zero on
every exercise that has tests (so every test can fail), the course notebooks score full marks, and the grader
keeps a crash, a timeout or an edited test to the exercise where it happens."""

import json
import re

import nbformat
import pytest

from conftest import ROOT
from roberta_from_scratch import assignments, grade
from roberta_from_scratch.course import ASSIGNMENT_DIR, COURSE_MAP, colab_url, notebook_text

NOTEBOOKS = assignments.exercise_notebooks(ROOT / "notebooks")
CORE = [c.notebook for c in COURSE_MAP if re.match(r"0[1-7]_", c.notebook)]
ids = [p.stem for p in NOTEBOOKS]


def meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def hidden_lines(nb, hidden=True):
    """The stripped lines inside hidden-test regions (or, with hidden=False, every line outside them)."""
    lines, inside = [], False
    for cell in nb["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END HIDDEN TESTS" in line:
                inside = False
            elif inside == hidden and line.strip():
                lines.append(line.strip())
    return lines


def test_every_core_notebook_has_two_to_four_graded_exercises():
    assert [p.name for p in NOTEBOOKS] == CORE
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        tests = [c for c in cells if meta(c).get("grade") and not meta(c).get("solution")]
        assert 2 <= len(tests) <= 4, path.name
        grade_ids = [meta(c)["grade_id"] for c in cells if meta(c)]
        assert len(grade_ids) == len(set(grade_ids)), path.name
        for test in tests:
            assert meta(test)["points"] > 0 and meta(test)["locked"] and meta(test)["schema_version"] == 3
            solution = meta(test)["grade_id"].removesuffix("-tests")
            assert solution in grade_ids, f"{path.name}: {meta(test)['grade_id']} has no solution cell"
            assert "assert" in "".join(test["source"])
        assert hidden_lines({"cells": cells}), f"{path.name} has no hidden tests"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_version_keeps_no_solution_and_no_hidden_test(path):
    source = json.loads(path.read_text())
    student = json.loads(notebook_text(assignments.student_version(path)))
    solutions = assignments.solution_lines(source)
    assert solutions

    def lines(cells):
        return {line.strip() for c in cells for line in "".join(c["source"]).splitlines()}

    exercise_lines = lines(c for c in student["cells"] if meta(c))
    every_line = lines(student["cells"])
    lesson_lines = lines(c for c in source["cells"] if not meta(c))  # what the lessons show anyway
    for line in solutions:
        assert line.strip() not in exercise_lines, f"solution line left in an exercise: {line!r}"
        assert line.strip() in lesson_lines or line.strip() not in every_line, f"solution line left: {line!r}"
    visible = set(hidden_lines(source, hidden=False))  # a hidden line may repeat a visible one
    for line in hidden_lines(source):
        assert line in visible or line not in every_line, f"hidden test line left: {line!r}"
    stubs = [c for c in student["cells"] if meta(c).get("solution") and c["cell_type"] == "code"]
    assert stubs and all("raise NotImplementedError()" in "".join(c["source"]) for c in stubs)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in student["cells"] if c["cell_type"] == "code")
    assert colab_url(path.name, folder=ASSIGNMENT_DIR) in "".join(student["cells"][0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_student_versions_are_up_to_date(path):
    committed = ROOT / ASSIGNMENT_DIR / path.name
    assert committed.is_file(), f"run `make assignments`: {committed.name} is missing"
    assert committed.read_text() == notebook_text(assignments.student_version(path)), \
        f"run `make assignments`: {committed.name} is stale"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_unmodified_student_notebook_scores_zero(path):
    report = grade.grade(ROOT / ASSIGNMENT_DIR / path.name, path)
    automatic = [e for e in report.exercises if e.status != grade.MANUAL]
    assert len(automatic) >= 2
    for exercise in automatic:
        assert exercise.score == 0 and exercise.status == grade.FAILED, exercise


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_solutions_score_full_marks(path):
    report = grade.grade(path, path)
    assert report.score == report.max_score > 0, report.table()
    assert all(e.status in (grade.PASSED, grade.MANUAL) for e in report.exercises)
    assert report.other_errors == []


def small_assignment(path, solutions):
    """A notebook with a lesson cell and one exercise per (name, solution body) pair, 1 point each."""
    def nbg(grade_id, **flags):
        return {"nbgrader": {"schema_version": 3, "grade": False, "solution": False, "locked": False,
                             "grade_id": grade_id, **flags}}

    cells = [nbformat.v4.new_code_cell("base = 41")]
    for name, body in solutions:
        cells.append(nbformat.v4.new_code_cell(f"def {name}():\n    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION",
                                               metadata=nbg(name, solution=True)))
        cells.append(nbformat.v4.new_code_cell(f"assert {name}() == 42\n### BEGIN HIDDEN TESTS\nassert {name}() != 41\n"
                                               "### END HIDDEN TESTS",
                                               metadata=nbg(f"{name}-tests", grade=True, locked=True, points=1)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def test_a_crash_or_a_timeout_costs_only_its_exercise(tmp_path):
    source = small_assignment(tmp_path / "source.ipynb", [
        ("loops", "    while True:\n        pass"),
        ("crashes", "    import os\n    os._exit(1)"),
        ("raises", "    raise ValueError('wrong')"),
        ("right", "    return base + 1"),  # needs the lesson cell's state, after the kernel was restarted
    ])
    report = grade.grade(source, source, timeout=3)
    results = {e.grade_id: (e.score, e.status) for e in report.exercises}
    assert results == {"loops": (0, grade.TIMEOUT), "crashes": (0, grade.FAILED), "raises": (0, grade.FAILED),
                       "right": (1, grade.PASSED)}
    assert "kernel died" in report.exercises[1].message and "ValueError: wrong" in report.exercises[2].message


def test_edited_or_deleted_tests_are_put_back(tmp_path):
    source = small_assignment(tmp_path / "source.ipynb", [("weak", "    return 41"), ("gone", "    return 41")])
    student = nbformat.read(source, as_version=4)
    student.cells[2].source = "pass  # the student disabled the test"
    del student.cells[4]  # and deleted another
    nbformat.write(student, tmp_path / "student.ipynb")
    report = grade.grade(tmp_path / "student.ipynb", source)
    assert [(e.grade_id, e.score, e.status) for e in report.exercises] == [("weak", 0, grade.FAILED),
                                                                          ("gone", 0, grade.MISSING)]


def test_command_line_json_and_bad_input(tmp_path, capsys):
    source = small_assignment(tmp_path / "source.ipynb", [("right", "    return base + 1")])
    grade.main([str(source), "--source", str(source), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert (result["score"], result["max_score"]) == (1, 1) and result["exercises"][0]["status"] == grade.PASSED
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "nowhere.ipynb"), "--source", str(source)])
    assert "nowhere.ipynb does not exist" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("not json")
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "broken.ipynb"), "--source", str(source)])
    assert "is not a readable notebook" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        assignments.main([str(tmp_path / "nowhere.ipynb")])
    assert "no such notebook" in capsys.readouterr().err


def test_nbgrader_itself_accepts_the_course_notebooks_and_agrees(tmp_path):
    """An instructor who runs nbgrader (without its database) gets the same student cells as `make assignments`,
    apart from the Colab badge, which ours points at assignments/."""
    import shutil
    import subprocess
    import sys

    source = tmp_path / "source" / "ps"
    source.mkdir(parents=True)
    for path in NOTEBOOKS:
        shutil.copy(path, source / path.name)
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ps", "--no-db"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for path in NOTEBOOKS:
        theirs = json.loads((tmp_path / "release" / "ps" / path.name).read_text())["cells"]
        ours = json.loads((ROOT / ASSIGNMENT_DIR / path.name).read_text())["cells"]
        assert len(theirs) == len(ours), path.name
        for index, (a, b) in enumerate(zip(ours[1:], theirs[1:]), start=1):
            assert "".join(a["source"]) == "".join(b["source"]), f"{path.name}, cell {index}"


SHORTCUTS = ROOT / "tests" / "shortcuts"


def shortcut_spec(path):
    """tests/shortcuts/<notebook>.json: for each exercise with tests, either a solution cell that only calls the
    package's (or PyTorch's) implementation, or the reason why no such implementation exists."""
    spec = json.loads((SHORTCUTS / f"{path.stem}.json").read_text())
    return spec["calls_the_package"], spec["no_package_equivalent"]


def automatic_exercises(nb):
    return [meta(c)["grade_id"].removesuffix(grade.TESTS_SUFFIX) for c in nb.cells
            if meta(c).get("grade") and not meta(c).get("solution") and c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_a_solution_that_calls_the_package_scores_zero(path, tmp_path):
    """Catches: an exercise that one call to the package (or to PyTorch's built-in) solves. The same shortcut
    submission, graded against tests whose `implement_yourself` blocks do nothing, scores full marks on those
    exercises: the shortcuts work, so the zero comes from the rule and not from a broken shortcut."""
    shortcuts, exempt = shortcut_spec(path)
    source = nbformat.read(path, as_version=4)
    assert sorted(automatic_exercises(source)) == sorted([*shortcuts, *exempt]), "every exercise needs an entry"
    assert shortcuts, f"{path.name}: no exercise is protected against the package's own implementation"
    submission = nbformat.read(path, as_version=4)
    replaced = set()
    for cell in submission.cells:
        if meta(cell).get("solution") and meta(cell)["grade_id"] in shortcuts:
            cell.source = shortcuts[meta(cell)["grade_id"]]
            replaced.add(meta(cell)["grade_id"])
    assert replaced == set(shortcuts), "a shortcut names no solution cell"
    nbformat.write(submission, tmp_path / path.name)

    strict = grade.grade(tmp_path / path.name, path)
    scores = {e.grade_id: e for e in strict.exercises}
    for grade_id in shortcuts:
        assert scores[grade_id].score == 0 and "ImplementYourself" in scores[grade_id].message, scores[grade_id]

    relaxed = nbformat.read(path, as_version=4)
    for cell in relaxed.cells:
        if meta(cell).get("grade") and cell.cell_type == "code" and "implement_yourself(" in cell.source:
            cell.source = ("_allow = lambda *targets: __import__('contextlib').nullcontext()\n"
                           + re.sub(r"\bimplement_yourself\(", "_allow(", cell.source))
    nbformat.write(relaxed, tmp_path / "relaxed.ipynb")
    lenient = {e.grade_id: e for e in grade.grade(tmp_path / path.name, tmp_path / "relaxed.ipynb").exercises}
    for grade_id in shortcuts:
        assert lenient[grade_id].score == lenient[grade_id].points > 0, lenient[grade_id]


def test_student_version_depends_only_on_the_sources(tmp_path):
    """Catches: the reference run's widget states (progress bars with its timings) copied into the student version,
    which then goes stale every time the course notebook is executed again."""
    path = NOTEBOOKS[0]
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": {}}}}
    nbformat.write(nb, tmp_path / path.name)
    assert "widgets" not in assignments.student_version(tmp_path / path.name).metadata
    assert notebook_text(assignments.student_version(tmp_path / path.name)) == \
        notebook_text(assignments.student_version(path))
