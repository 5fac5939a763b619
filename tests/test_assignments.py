"""Classroom assignments: the student versions hold no solution and no hidden test, unmodified they score zero on
every exercise that has tests (so every test can fail), the course notebooks score full marks, and the grader
keeps a crash, a timeout or an edited test to the exercise where it happens."""

import json
import re

import nbformat
import pytest

from conftest import ROOT
from roberta_from_scratch.classroom import assignments, grade, sandbox
from roberta_from_scratch.course.notebooks import ASSIGNMENT_DIR, COURSE_MAP, colab_url, notebook_text

NOTEBOOKS = assignments.exercise_notebooks(ROOT / "notebooks")
CORE = [c.notebook for c in COURSE_MAP if re.match(r"(0[1-9]|1[01])_", c.notebook)]  # every notebook but the tour
ids = [p.stem for p in NOTEBOOKS]
# Grading needs bubblewrap (Debian's `bubblewrap`; .ci/run installs it); without it, the tests that are about
# grading itself grade unconfined (the report says so), and the tests that are about confinement are skipped.
WHY_UNCONFINED = sandbox.why_unconfined()
UNCONFINED = {"unconfined": WHY_UNCONFINED is not None}
needs_confinement = pytest.mark.skipif(WHY_UNCONFINED is not None,
                                       reason=f"cannot confine: bubblewrap cannot run here: {WHY_UNCONFINED}")


@pytest.fixture(scope="module", autouse=True)
def course_artifacts():
    """The tokenizer the lessons load, built once at the test scale in this process's data folder: the grader copies
    that folder into every sandbox, so no grading rebuilds it. (The pretrained model they load is the reference
    model, which ships with the package, when notebook 05's is missing.)"""
    from roberta_from_scratch.course.artifacts import course_tokenizer

    course_tokenizer()


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


def distinctive(line, statements=""):
    """A line of a solution that would give the answer away: not an import, a signature, a bare return, a comment, a
    docstring, a call of the parent's constructor, the declaration of a submodule (``self.dense = nn.Linear(...)``),
    a bare call of an API the statement names (resetting gradients, clipping their norm), or anything else that the
    statements spell out, and at least 20 characters long."""
    text = line.strip()
    value = re.sub(r"^[\w, ]+ = ", "", text)  # what an assignment computes, which a statement may spell out
    return (len(text) >= 20 and not text.startswith(("#", "import ", "from ", "def ", "class ", "return ", '"""',
                                                     "raise NotImplementedError", "super().__init__(", "with torch.no_grad()",
                                                     "optimizer.zero_grad(", "model.zero_grad(", "torch.nn.utils.clip_grad_norm_("))
            and not re.match(r"self\.\w+ = nn\.\w+\(", text) and text not in statements and value not in statements)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_version_keeps_no_solution_and_no_hidden_test(path):
    """Catches: an answer on the page, in the exercise (a solution line left in) or in a lesson cell above it (the
    lesson's own code for the same piece: its student version must do that step with the package instead,
    assignments.STUDENT_KEY), and a hidden test left in."""
    source = json.loads(path.read_text())
    student = json.loads(notebook_text(assignments.student_version(path)))
    solutions = assignments.solution_lines(source)
    assert solutions

    def lines(cells):
        return {line.strip() for c in cells for line in "".join(c["source"]).splitlines()}

    every_line = lines(student["cells"])
    statements = "\n".join("".join(c["source"]) for c in source["cells"]
                           if c["cell_type"] == "markdown" and meta(c).get("locked"))
    left = [line.strip() for line in solutions if distinctive(line, statements) and line.strip() in every_line]
    assert not left, f"answers on the page: these lines of the reference solutions are in the student version: {left}"
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


FULL_MARKS = [p for p in NOTEBOOKS if p.name == "02_attention.ipynb"]


@pytest.mark.parametrize("path", FULL_MARKS, ids=[p.stem for p in FULL_MARKS])
def test_solutions_score_full_marks(path, tmp_path):
    """Catches: a grader that does not give full marks to right answers (the whole path: sandboxed kernel, guard,
    restored test cells, scoring). One notebook suffices for the path: that every course notebook's solutions pass
    their visible and hidden tests is what the notebook suite (nbval) checks, since the course notebooks hold both,
    and that each one runs in the grader's sandbox is what the shortcut test below checks, grading every notebook."""
    assert FULL_MARKS
    submission = tmp_path / path.name
    submission.write_bytes(path.read_bytes())
    report = grade.grade(submission, path, **UNCONFINED)
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
    report = grade.grade(copy_of(source), source, timeout=3, **UNCONFINED)
    results = {e.grade_id: (e.score, e.status) for e in report.exercises}
    assert results == {"loops": (0, grade.TIMEOUT), "crashes": (0, grade.FAILED), "raises": (0, grade.FAILED),
                       "right": (1, grade.PASSED)}
    assert "kernel died" in report.exercises[1].message and "ValueError: wrong" in report.exercises[2].message
    assert not kernels_left(), "a kernel outlived its grading"


def copy_of(path):
    """A submission that is the course notebook's content in another file (the grader refuses the file itself)."""
    copy = path.with_name("submission-" + path.name)
    copy.write_bytes(path.read_bytes())
    return copy


def kernels_left():
    """Sandboxed kernels that this process started and that are still running (Linux's /proc)."""
    import os
    from pathlib import Path

    left = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and (b"roberta_from_scratch.classroom.sandbox" in command or b"bwrap" in command):
            left.append(proc.name)
    return left


def test_edited_or_deleted_tests_are_put_back(tmp_path):
    source = small_assignment(tmp_path / "source.ipynb", [("weak", "    return 41"), ("gone", "    return 41")])
    student = nbformat.read(source, as_version=4)
    student.cells[2].source = "pass  # the student disabled the test"
    del student.cells[4]  # and deleted another
    nbformat.write(student, tmp_path / "student.ipynb")
    report = grade.grade(tmp_path / "student.ipynb", source, **UNCONFINED)
    assert [(e.grade_id, e.score, e.status) for e in report.exercises] == [("weak", 0, grade.FAILED),
                                                                          ("gone", 0, grade.MISSING)]


def test_command_line_json_and_bad_input(tmp_path, capsys):
    source = small_assignment(tmp_path / "source.ipynb", [("right", "    return base + 1")])
    grade.main([str(copy_of(source)), "--source", str(source), "--json",
                *(["--unconfined"] if WHY_UNCONFINED else [])])
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
    apart from the Colab badge, which ours points at assignments/, and the lesson cells whose code an exercise asks
    for, which nbgrader leaves on the page."""
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
        course = json.loads(path.read_text())["cells"]
        for index, (a, b) in enumerate(zip(ours[1:], theirs[1:]), start=1):
            if assignments.STUDENT_KEY in course[index].get("metadata", {}):
                continue  # answers off the page: nbgrader does not know this step (README, for instructors)
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
def test_student_version_and_package_shortcuts_score_zero(path, tmp_path):
    """Catches: a test that cannot fail (the committed student version, unmodified, must score 0 on every exercise
    with tests), and an exercise that one call to the package (or to PyTorch's built-in) solves: the student
    version with those solution cells replaced by package-calling shortcuts also scores 0 on them, and the message
    says that the tests passed with the shortcut: the shortcuts work, so the zero comes from the rule and not from
    a broken shortcut. (implement_yourself lets a recorded call run and fails the test when its block ends, so one
    grading shows both.) Also: a lesson cell that fails in the grader's sandbox (its limits, its scrubbed
    environment), which would cost every student the exercises after it."""
    shortcuts, exempt = shortcut_spec(path)
    source = nbformat.read(path, as_version=4)
    assert sorted(automatic_exercises(source)) == sorted([*shortcuts, *exempt]), "every exercise needs an entry"
    assert shortcuts or (exempt and all(exempt.values())), \
        f"{path.name}: no exercise is protected against the package's own implementation, and none says why not"
    submission = nbformat.read(ROOT / ASSIGNMENT_DIR / path.name, as_version=4)
    replaced = set()
    for cell in submission.cells:
        if meta(cell).get("solution") and meta(cell)["grade_id"] in shortcuts:
            cell.source = shortcuts[meta(cell)["grade_id"]]
            replaced.add(meta(cell)["grade_id"])
    assert replaced == set(shortcuts), "a shortcut names no solution cell"
    nbformat.write(submission, tmp_path / path.name)

    strict = grade.grade(tmp_path / path.name, path, **UNCONFINED)
    lesson_errors = [error for error in strict.other_errors if "(lesson)" in error]
    assert not lesson_errors, f"the lesson cells fail in the grader's sandbox: {strict.details}"
    automatic = [e for e in strict.exercises if e.status != grade.MANUAL]
    assert len(automatic) >= 2
    for exercise in automatic:
        assert exercise.score == 0 and exercise.status == grade.FAILED, exercise
        expected = "ImplementYourself" if exercise.grade_id in shortcuts else "NotImplementedError"
        assert expected in exercise.message, exercise
        if exercise.grade_id in shortcuts:
            assert exercise.message.startswith("ImplementYourself: the tests passed, but with a call of"), exercise


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


# ----------------------------------------------------------------------------------------------- hostile input

EXPLOITS = {  # grade id: (what the student's solution cell does, the test cell). Every test fails honestly.
    "transformer": ("get_ipython().input_transformers_post.append(lambda lines: [])  # blank every later cell\n"
                    "def transformer():\n    return 0", "assert transformer() == 42"),
    "ast": ("import ast\nclass Emptied(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
            "        return ast.Module(body=[ast.Pass()], type_ignores=[])\n"
            "get_ipython().ast_transformers.append(Emptied())\ndef ast_():\n    return 0", "assert ast_() == 42"),
    "patched": ("import torch, torch.testing\ntorch.testing.assert_close = lambda *a, **k: None\n"
                "torch.equal = lambda *a: True\ndef patched():\n    return torch.tensor(0.0)",
                "import torch\ntorch.testing.assert_close(patched(), torch.tensor(42.0))\n"
                "if not torch.equal(patched(), torch.tensor(42.0)):\n    raise AssertionError('wrong')"),
    "code": ("import torch.testing\ntorch.testing.assert_close.__code__ = (lambda *a, **k: None).__code__\n"
             "def code():\n    return __import__('torch').tensor(0.0)",
             "import torch\ntorch.testing.assert_close(code(), torch.tensor(42.0))"),
    "during": ("import torch\ndef during():\n    torch.testing.assert_close = lambda *a, **k: None  # when called\n"
               "    return torch.tensor(0.0)",
               "import torch\nvalue = during()\ntorch.testing.assert_close(value, torch.tensor(42.0))"),
    "modules": ("import sys, types\nfake = types.ModuleType('torch.testing')\nfake.assert_close = lambda *a, **k: None\n"
                "sys.modules['torch.testing'] = fake\ndef modules():\n    return 0",
                "import torch\nfrom torch.testing import assert_close\nassert_close(torch.tensor(modules() + 0.0), "
                "torch.tensor(42.0))"),
    "hook": ("def erase(result):\n    result.error_in_exec = None\n"
             "get_ipython().events.register('post_run_cell', erase)\ndef hook():\n    return 0",
             "assert hook() == 42"),
    "handler": ("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\ndef handler():\n    return 0",
                "assert handler() == 42"),
    "run_cell": ("import IPython\nshell = get_ipython()\n"
                 "shell.run_cell = lambda *a, **k: IPython.core.interactiveshell.ExecutionResult(None)\n"
                 "def run_cell():\n    return 0", "assert run_cell() == 42"),
    "sigint": ("import signal, time\ndef sigint():\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
               "    time.sleep(3600)", "assert sigint() == 42"),
    "late": ("import transformers.activations as activations\nactivations.gelu_python = lambda x: x * 0\n"
             "def late(x):\n    return x * 0",  # a module the guard saves only once a cell imports it
             "import torch\nfrom transformers.activations import gelu_python\nx = torch.linspace(-3, 3, 7)\n"
             "torch.testing.assert_close(late(x), gelu_python(x))"),
    "right": ("def right():\n    return base + 1", "assert right() == 42"),  # honest and right, after all that
}


def hostile_assignment(path, exploits):
    """A course notebook with one exercise per exploit (the right solution: return 42), and the student's
    submission: each solution cell replaced by the exploit."""
    solutions = [(name, "    return 42") for name in exploits]
    source = small_assignment(path, solutions)
    nb = nbformat.read(source, as_version=4)
    tests = {meta(c)["grade_id"]: c for c in nb.cells if meta(c).get("grade")}
    for name, (solution, test) in exploits.items():
        tests[f"{name}-tests"].source = test
    nbformat.write(nb, source)
    student = nbformat.read(source, as_version=4)
    for cell in student.cells:
        if meta(cell).get("solution"):
            cell.source = exploits[meta(cell)["grade_id"]][0]
    return source, student


def test_exploits_in_an_unsolved_notebook_score_nothing(tmp_path):
    """Catches: the grader trusting the submission (a graded cell it added, points it raised, a test cell it
    repeated), and student code that disables the tests after it: IPython input and AST transformers, replaced
    or rewritten assert helpers, a module swapped in sys.modules, a function that patches the tools while the
    test calls it, a hook that erases a cell's error, a custom exception handler, a replaced run_cell, a cell
    that ignores the interrupt. Each exploit scores 0; the honest exercise after them still scores."""
    source, student = hostile_assignment(tmp_path / "source.ipynb", EXPLOITS)
    forged = {"nbgrader": {"schema_version": 3, "grade": True, "solution": False, "locked": True, "grade_id": "bonus",
                           "points": 100}}
    student.cells.append(nbformat.v4.new_code_cell("assert True", metadata=forged))
    test_cell = next(c for c in student.cells if meta(c).get("grade_id") == "right-tests")
    test_cell.metadata["nbgrader"]["points"] = 50
    student.cells.append(nbformat.v4.new_code_cell("pass", metadata=json.loads(json.dumps(test_cell.metadata))))
    nbformat.write(student, tmp_path / "student.ipynb")
    report = grade.grade(tmp_path / "student.ipynb", source, timeout=4, deadline=240, **UNCONFINED)
    scores = {e.grade_id: (e.score, e.status) for e in report.exercises}
    assert set(scores) == set(EXPLOITS), report.table()  # 'bonus' is not an exercise, 'right' is graded once
    for name in EXPLOITS:
        if name != "right":
            assert scores[name][0] == 0, (name, report.table())
    assert scores["right"] == (1, grade.PASSED), report.table()
    assert (report.score, report.max_score) == (1, len(EXPLOITS))
    assert scores["during"][1] == grade.TAMPERED and scores["sigint"][1] == grade.TIMEOUT
    notes = "\n".join(report.other_errors)
    assert "not part of the assignment" in notes and "repeats 'right-tests'" in notes
    assert "ignored the interrupt" in notes and "input_transformers_post" in notes


@needs_confinement
def test_a_confined_kernel_keeps_the_grader_safe_and_grading_ends_at_its_deadline(tmp_path, monkeypatch, capfd):
    """Catches: a kernel that inherits the grader's secrets or works in the submission's folder; one that reaches
    the network (a socket listening on this machine); one that writes a forged JSON report into the grader's own
    output or kills its parent; one that reaches the grader's own process (a signal sent to its PID arrives, its
    environment with the secrets can be read); a notebook whose cells all hang, ignoring the interrupt, holding the
    grader for cells x timeout; and a report that names the caller's scale instead of the scale the kernel ran at."""
    import os
    import signal
    import socket
    import threading
    import time

    monkeypatch.setenv("RFS_SCALE", "cpu")
    monkeypatch.setenv("GRADER_API_TOKEN", "do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    hang = "    import signal, time\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    time.sleep(3600)"
    source = small_assignment(tmp_path / "source.ipynb", [("env", "    return 42"), ("offline", "    return 42"),
                                                         ("forge", "    return 42"), ("after", "    return 42")]
                              + [(f"hang{i}", hang) for i in range(6)])
    nb = nbformat.read(source, as_version=4)
    cells = {meta(c).get("grade_id"): c for c in nb.cells}
    cells["env-tests"].source = ("import os, pathlib\nassert env() == 42\n"
                                 "assert not [k for k in os.environ if 'TOKEN' in k or 'SECRET' in k], sorted(os.environ)\n"
                                 f"assert pathlib.Path.cwd() != pathlib.Path({str(tmp_path)!r})\n"
                                 "assert os.environ['RFS_SCALE'] == 'smoke'")
    cells["offline-tests"].source = ("import socket\ntry:\n"
                                     f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
                                     "    reached = True\nexcept OSError:\n    reached = False\n"
                                     "assert offline() == 42 and not reached, 'the kernel reached the network'")
    nbformat.write(nb, source)
    student = nbformat.read(source, as_version=4)
    cells = {meta(c).get("grade_id"): c for c in student.cells}
    cells["forge"].source = ("import os\nos.write(1, b'{\"score\": 100, \"max_score\": 100}\\n')\n"
                             "os.write(2, b'forged\\n')\ndef forge():\n    return 0\n")
    # The grader's own process, named outright: its environment read (where the grader's secrets were at its start),
    # a signal sent to it (SIGURG, harmless where it lands), then its own parent killed. after() answers right only
    # if not one byte of that environment came.
    cells["after"].source = ("import os, signal\n"
                             f"try:\n    secret = open('/proc/{os.getpid()}/environ', 'rb').read()\n"
                             "except OSError:\n    secret = b''\n"
                             f"try:\n    os.kill({os.getpid()}, signal.SIGURG)\nexcept OSError:\n    pass\n"
                             "os.kill(os.getppid(), signal.SIGKILL)\n"
                             "def after():\n    return 0 if secret else 42\n")
    nbformat.write(student, tmp_path / "student.ipynb")
    capfd.readouterr()
    signalled = []
    previous = signal.signal(signal.SIGURG, lambda *args: signalled.append(args))  # grade.main runs here, in-process
    start = time.monotonic()
    try:
        grade.main([str(tmp_path / "student.ipynb"), "--source", str(source), "--json", "--timeout", "3",
                    "--deadline", "30"])
    finally:
        signal.signal(signal.SIGURG, previous)
    elapsed = time.monotonic() - start
    server.close()
    out, err = capfd.readouterr()
    assert "forged" not in out and "forged" not in err
    result = json.loads(out)  # one report, nothing written before it
    scores = {e["grade_id"]: (e["score"], e["status"], e["message"]) for e in result["exercises"]}
    assert result["scale"] == "smoke" and "environment scrubbed" in result["confinement"]
    assert result["confinement"].startswith("bubblewrap: new user, network, PID")
    assert scores["env"][:2] == (1, grade.PASSED), scores["env"]
    assert scores["forge"][0] == 0
    assert all(scores[f"hang{i}"][:2] == (0, grade.TIMEOUT) for i in range(6))
    assert any("deadline" in scores[f"hang{i}"][2] for i in range(6)), scores
    assert elapsed < 30 + 60, elapsed  # the deadline, plus one kernel start and one restart
    assert scores["offline"][:2] == (1, grade.PASSED), scores["offline"]
    # The grader's PID names no process in the sandbox's PID namespace: the signal never arrived, the environment
    # was not read (the kernel's after() says so), and the parent it killed is the sandbox's own init, which ignores
    # it: the kernel lives on (not "kernel died") and grades the right answer.
    assert not signalled, "a kernel's signal reached the grader"
    assert scores["after"][:2] == (1, grade.PASSED), scores["after"]


# ----------------------------------------------------------------------------------------------- the second round

ATTACK_NAMES = ("00-rfs-attack.py", "zz-rfs-attack.pth", "zz_rfs_attack.py", "zz-rfs-attack")


def host_state():
    """What a kernel must never change on the grader's machine: the grader's IPython and Jupyter folders, the
    package, the course notebooks (every file, with its size and time), and the names at the top of the
    environment's site-packages and the temporary folder."""
    import site
    import tempfile
    from pathlib import Path

    state = {}
    for folder in (Path.home() / ".ipython", Path.home() / ".jupyter", Path(sandbox.__file__).parent,
                   ROOT / "notebooks"):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if "__pycache__" not in path.parts:
                stat = path.stat()
                state[str(path)] = (stat.st_size, stat.st_mtime_ns)
    for folder in (*site.getsitepackages(), tempfile.gettempdir()):
        state[folder] = sorted(p.name for p in Path(folder).iterdir() if p.name in ATTACK_NAMES)
    return state


POISON = """import os, pathlib, site
import roberta_from_scratch
payload = ("import torch, torch.testing\\ntorch.testing.assert_close = lambda *a, **k: None\\n"
           "torch.equal = lambda *a, **k: True\\n")
targets = [pathlib.Path.home() / ".ipython/profile_default/startup/00-rfs-attack.py",
           pathlib.Path(os.environ.get("IPYTHONDIR", "/nowhere")) / "profile_default/startup/00-rfs-attack.py",
           pathlib.Path(HOST_HOME) / ".ipython/profile_default/startup/00-rfs-attack.py",
           *[pathlib.Path(p) / "zz-rfs-attack.pth" for p in site.getsitepackages()],
           pathlib.Path(roberta_from_scratch.__file__).parent / "zz_rfs_attack.py",
           pathlib.Path("/tmp/zz-rfs-attack")]
for target in targets:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(payload if target.suffix == ".py" else "import os; os.environ['RFS_ATTACKED'] = '1'\\n")
    except OSError:
        pass
os._exit(1)  # the kernel restarts: an IPython startup file in the grader's HOME would run before the guard
"""
SUBCLASS = """import torch
class Always(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
def subclass():
    return torch.zeros(()).as_subclass(Always)
"""
DUMMY = "import torch\ndef {name}():\n    return torch.tensor(0.0)\n"
TENSOR_TEST = ("import torch\ntorch.testing.assert_close({name}(), torch.tensor(42.0))\n"
               "if not torch.equal({name}(), torch.tensor(42.0)):\n    raise AssertionError('wrong')")


@needs_confinement
def test_second_round_attacks_score_nothing_and_leave_the_machine_unchanged(tmp_path):
    """Catches: a submission that writes an IPython startup file into the grader's HOME (or a .pth into the
    environment, or a module into the package) and crashes, so that its restarted kernel, and every later
    submission, runs with assert helpers that always pass; and a tensor subclass that answers every comparison
    itself. Each scores 0, a later honest-but-wrong submission scores 0, and no file appears on the grader's
    machine."""
    from pathlib import Path

    before = host_state()
    exploits = {"poison": (POISON.replace("HOST_HOME", repr(str(Path.home()))), TENSOR_TEST.format(name="poison")),
                **{f"dummy{i}": (DUMMY.format(name=f"dummy{i}"), TENSOR_TEST.format(name=f"dummy{i}"))
                   for i in range(2)},
                "right": ("def right():\n    return base + 1", "assert right() == 42"),
                # last: no test after a tensor subclass is defined can be trusted, so every later one scores 0
                "subclass": (SUBCLASS, TENSOR_TEST.format(name="subclass") + "\nassert subclass() == 42")}
    source, student = hostile_assignment(tmp_path / "source.ipynb", exploits)
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:  # the right answers, as tensors
        if meta(cell).get("solution") and meta(cell)["grade_id"] != "right":
            cell.source = f"import torch\ndef {meta(cell)['grade_id']}():\n    return torch.tensor(42.0)"
    nbformat.write(nb, source)
    nbformat.write(student, tmp_path / "student.ipynb")
    report = grade.grade(tmp_path / "student.ipynb", source, timeout=20, deadline=300)
    scores = {e.grade_id: (e.score, e.status) for e in report.exercises}
    assert scores == {"poison": (0, grade.FAILED), "dummy0": (0, grade.FAILED), "dummy1": (0, grade.FAILED),
                      "subclass": (0, grade.TAMPERED), "right": (1, grade.PASSED)}, report.table()

    later = nbformat.read(source, as_version=4)  # a later submission: wrong answers, no attack
    for cell in later.cells:
        if meta(cell).get("solution"):
            cell.source = DUMMY.format(name=meta(cell)["grade_id"])
    nbformat.write(later, tmp_path / "later.ipynb")
    report = grade.grade(tmp_path / "later.ipynb", source, timeout=20, deadline=300)
    assert report.score == 0, report.table()
    assert host_state() == before, "a kernel changed the grader's machine"
    assert grade.grade(copy_of(source), source).score == len(exploits)  # the right answers still score


def test_plain_accepts_values_and_refuses_what_answers_for_itself():
    import numpy
    import torch

    from roberta_from_scratch.classroom.grader_guard import NotPlain, plain

    value = {"ids": [1, 2], "logits": torch.ones(2), "array": numpy.zeros(3), "n": numpy.float32(1), "s": "x"}
    assert plain(value) is value and plain((torch.float32, torch.Size([2]), None)) is not None
    assert plain(torch.nn.Linear(2, 2).weight) is not None  # PyTorch's own subclass, answering nothing itself

    class Sub(torch.Tensor):
        pass

    class Eq:
        def __eq__(self, other):
            return True

    for bad in (torch.zeros(2).as_subclass(Sub), Eq(), [torch.ones(1), Eq()], {"k": Eq()},
                numpy.array([Eq()], dtype=object)):
        with pytest.raises(NotPlain):
            plain(bad)


@needs_confinement
def test_reference_solutions_are_out_of_reach_while_grading(tmp_path):
    """Catches: a submission that finds the course notebook (through the package's path, the working folder or a
    search of the file system) and runs its solution cells: under the grader it finds nothing and scores 0;
    unconfined, the same submission scores full marks, which shows that the attack works."""
    path = ROOT / "notebooks" / "02_attention.ipynb"
    submission = nbformat.read(ROOT / ASSIGNMENT_DIR / path.name, as_version=4)
    thief = ("import json, pathlib, roberta_from_scratch\n"
             "here = pathlib.Path(roberta_from_scratch.__file__).resolve().parent\n"
             "places = [here.parent / 'notebooks', pathlib.Path.cwd().parent / 'notebooks', pathlib.Path.home()]\n"
             "found = [p for place in places for p in sorted(place.glob('**/02_attention.ipynb')) if p.is_file()\n"
             "         and 'BEGIN SOLUTION' in p.read_text()]\n"
             "for cell in json.loads(found[0].read_text())['cells']:\n"
             "    if cell['metadata'].get('nbgrader', {}).get('solution') and cell['cell_type'] == 'code':\n"
             "        exec(''.join(cell['source']), globals())\n")
    solutions = [c for c in submission.cells if meta(c).get("solution") and c.cell_type == "code"]
    solutions[0].source = thief
    for cell in solutions[1:]:
        cell.source = "pass"
    nbformat.write(submission, tmp_path / path.name)
    confined = grade.grade(tmp_path / path.name, path)
    assert confined.score == 0 and confined.max_score > 0, confined.table()
    loose = grade.grade(tmp_path / path.name, path, unconfined=True)
    assert loose.score == loose.max_score and "UNCONFINED" in loose.confinement, loose.table()


def test_a_submission_is_never_its_own_course_notebook(tmp_path, monkeypatch):
    """Catches: a grader that, with no course notebook beside the package (a plain pip install), grades a
    submission against itself (the student's own 'tests' and 'solutions'), or is handed the same file twice."""
    own = tmp_path / "notebooks" / "99_own.ipynb"
    own.parent.mkdir()
    small_assignment(own, [("right", "    return base + 1")])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="other than the submission itself"):
        grade.default_source(own)
    with pytest.raises(ValueError, match="is the course notebook itself"):
        grade.grade(own, own, **UNCONFINED)


def test_unconfined_grading_is_refused_unless_asked_and_then_reported(tmp_path, monkeypatch, capsys):
    source = small_assignment(tmp_path / "source.ipynb", [("right", "    return base + 1")])
    monkeypatch.setattr(sandbox, "why_unconfined", lambda: "bubblewrap is not installed (a test)")
    with pytest.raises(grade.Unconfined, match="bubblewrap is not installed"):
        grade.grade(copy_of(source), source)
    with pytest.raises(SystemExit):
        grade.main([str(copy_of(source)), "--source", str(source)])
    assert "cannot confine" in capsys.readouterr().err
    report = grade.grade(copy_of(source), source, unconfined=True)
    assert report.score == 1 and report.confinement.startswith("UNCONFINED (--unconfined: asked for)")


def test_errors_of_ordinary_cells_reach_the_report_without_their_text(tmp_path):
    """Catches: the grade report as a channel back to the student (a lesson or solution cell's error message,
    chosen by the student, copied into the report)."""
    source = small_assignment(tmp_path / "source.ipynb", [("right", "    return base + 1")])
    student = nbformat.read(source, as_version=4)
    student.cells.insert(1, nbformat.v4.new_code_cell("raise ValueError('the hidden test reads 41')"))
    student.cells.insert(2, nbformat.v4.new_code_cell("class Leak(Exception):\n    pass\nraise Leak('secret')"))
    nbformat.write(student, tmp_path / "student.ipynb")
    report = grade.grade(tmp_path / "student.ipynb", source, **UNCONFINED)
    assert report.other_errors == ["cell 1 (lesson): ValueError (message withheld)",
                                   "cell 2 (lesson): an exception (message withheld)"], report.other_errors
    assert report.score == 1 and "hidden test" not in report.to_json() + report.table()
    assert "the hidden test reads 41" in report.table(details=True) and "Leak: secret" in report.to_json(details=True)


MISTAKES = ROOT / "tests" / "mistakes"
WITH_MISTAKES = [p for p in NOTEBOOKS if (MISTAKES / f"{p.stem}.json").is_file()]


@pytest.mark.parametrize("path", WITH_MISTAKES, ids=[p.stem for p in WITH_MISTAKES])
def test_plausible_mistakes_score_zero(path, tmp_path):
    """Catches: tests too weak to tell a right answer from a plausible wrong one (ties broken by strings, merges
    applied from the left, invalid UTF-8 dropped, -inf masking that gives NaN on an all-padding row, ...):
    tests/mistakes/<notebook>.json holds, for each exercise, the reference solution with one such mistake, and
    each must fail its tests (not by NotImplementedError or the package rule). Also: an exercise whose tests need
    the lesson's state (the submission here has none of the lesson's code cells), which would make a student rerun a
    long lesson to check one exercise."""
    mistakes = {k: v for k, v in json.loads((MISTAKES / f"{path.stem}.json").read_text()).items()
                if not k.startswith("_")}
    source = nbformat.read(path, as_version=4)
    assert sorted(mistakes) == sorted(automatic_exercises(source)), "every exercise needs a mistake"
    submission = nbformat.read(ROOT / ASSIGNMENT_DIR / path.name, as_version=4)
    for cell in submission.cells:
        if meta(cell).get("solution") and meta(cell)["grade_id"] in mistakes:
            cell.source = mistakes[meta(cell)["grade_id"]]
    # Without the lesson's code cells (the setup cell kept): every exercise's tests must stand alone, and the
    # grading takes seconds instead of the lesson's minutes.
    submission.cells = [c for c in submission.cells if c.cell_type != "code" or meta(c) or c.source.startswith("# Setup")]
    nbformat.write(submission, tmp_path / path.name)
    report = grade.grade(tmp_path / path.name, path, **UNCONFINED)
    assert not [e for e in report.other_errors if "(lesson)" in e], report.details
    for exercise in (e for e in report.exercises if e.status != grade.MANUAL):
        assert exercise.score == 0 and exercise.status == grade.FAILED, exercise
        assert not exercise.message.startswith(("NotImplementedError", "ImplementYourself")), exercise


@needs_confinement
def test_an_environment_under_tmp_stays_visible(tmp_path, monkeypatch):
    """Catches: a sandbox whose private /tmp hides the Python environment or the package when they lie under /tmp
    (a CI clone): the kernel would not start at all. Here a folder under /tmp stands in for the environment."""
    import subprocess

    environment = tmp_path / "venv-under-tmp"
    environment.mkdir()
    (environment / "marker.txt").write_text("visible")
    (tmp_path / "work").mkdir()
    assert str(environment).startswith("/tmp/")  # pytest's temporary folders: the case this test is about
    roots = sandbox.readable_roots()
    monkeypatch.setattr(sandbox, "readable_roots", lambda: [*roots, str(environment)])
    command = sandbox.confined_command(["/bin/cat", str(environment / "marker.txt")], writable=[tmp_path / "work"],
                                       workdir=tmp_path / "work", env={"PATH": "/usr/bin:/bin"})
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "visible", (done.returncode, done.stderr)
