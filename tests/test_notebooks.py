"""Notebook hygiene: what a reader sees on GitHub and what Colab runs. nbval executes them; this reads them."""

import json
import re
import shutil

import pytest

from conftest import ROOT
from roberta_from_scratch.course import notebooks as course

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Paths of a developer's machine that must never show in committed outputs.
MACHINE_PATHS = re.compile(r"(/home/\w|/root/|/Users/\w|/work/|/tmp/|/private/var/|[A-Z]:\\\\Users|site-packages)")


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def _output_text(output) -> str:
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return "".join("".join(v) if isinstance(v, list) else str(v) for k, v in data.items() if not k.startswith("image/"))


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, json.loads(request.param.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_course_tour.ipynb"


def test_title_badge_and_setup_cell(notebook):
    path, nb = notebook
    first, second = nb["cells"][0], nb["cells"][1]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")
    assert course.badge(path.name) in "".join(first["source"])
    assert second["cell_type"] == "code" and "".join(second["source"]) == course.setup_cell()


def test_committed_from_a_clean_top_to_bottom_run(notebook):
    _, nb = notebook
    cells = _code_cells(nb)
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    assert any(c["outputs"] for c in cells), "no outputs: execute it with `make execute` and commit"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, [e["ename"] for e in errors]
    stderr = [o for c in cells for o in c["outputs"] if o["output_type"] == "stream" and o["name"] == "stderr"
              and ("Traceback" in "".join(o["text"]) or "Warning" in "".join(o["text"]))]
    assert not stderr, ["".join(o["text"])[:200] for o in stderr]


def test_outputs_show_no_paths_of_the_machine_that_ran_them(notebook):
    _, nb = notebook
    for cell in _code_cells(nb):
        for output in cell["outputs"]:
            match = MACHINE_PATHS.search(_output_text(output))
            assert not match, f"cell {cell['execution_count']}: {match.group(0)!r} in its output"


def test_size_under_two_megabytes(notebook):
    path, _ = notebook
    assert path.stat().st_size < 2 * 2**20


def test_sync_is_idempotent_and_follows_the_repository_setting(tmp_path):
    copy = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], copy)
    assert course.sync_notebook(copy) is False  # committed notebooks are in sync
    assert course.sync_notebook(copy, repository="someone/fork", branch="dev", release="v9.9.9") is True
    nb = json.loads(copy.read_text())
    assert "github/someone/fork/blob/dev/notebooks/00_course_tour.ipynb" in "".join(nb["cells"][0]["source"])
    setup = "".join(nb["cells"][1]["source"])
    assert 'REPO = "https://github.com/someone/fork"' in setup and "git+{REPO}@{ref}" in setup
    assert 'install("v9.9.9" if tagged else "dev")' in setup  # the branch only while the release is not tagged
    assert len(nb["cells"]) == len(json.loads(NOTEBOOKS[0].read_text())["cells"])  # replaced, not added


def test_sync_adds_badge_and_setup_cell_to_a_bare_notebook(tmp_path):
    bare = tmp_path / "09_new.ipynb"
    bare.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 09 · New"]}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert course.sync_notebook(bare)
    nb = json.loads(bare.read_text())
    assert course.badge("09_new.ipynb") in "".join(nb["cells"][0]["source"])
    assert "".join(nb["cells"][1]["source"]) == course.setup_cell()


# A figure in prose: a percentage (26.9%, 15%) or a decimal (4.26, 0.98). Figures inside `code` or $maths$ are
# code and equations, not claims about a run.
FIGURE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%|(?<![\w.])\d[\d,]*\.\d+(?![\w.]*\d)")
CODE_OR_MATHS = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", re.S)
# A cell that names where its figures come from: a paper (author year, arXiv, its table or section), another
# project's documentation or source, or another file of this course.
SOURCE = re.compile(r"et al\.|arXiv|Table \d|§\s?\d|\b[A-Z][a-z]+ (?:& [A-Z][a-z]+ )?\(?(?:19|20)\d\d\b|fairseq|"
                    r"Hugging Face|transformers'|PyTorch's|nanoGPT|README|benchmarks/results\.md|notebook \d\d|"
                    r"NVIDIA|datasheet")


def unsourced_figures(nb) -> list[tuple[int, str]]:
    """(cell index, figure) for each figure of a markdown cell that no output of the notebook prints and that the
    cell gives no source for."""
    printed = "\n".join(_output_text(o) for c in _code_cells(nb) for o in c["outputs"])
    missing = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        prose = CODE_OR_MATHS.sub(" ", "".join(cell["source"]))
        if SOURCE.search(prose):
            continue
        missing += [(index, f) for f in FIGURE.findall(prose) if f not in printed]
    return missing


def test_figures_in_prose_are_printed_or_sourced(notebook):
    """Catches: a number about a run written into the prose by hand, which the next run leaves stale. Each
    percentage or decimal in a markdown cell must appear in an output of the same notebook, or the cell must name
    its source (a paper, a project, another part of the course)."""
    path, nb = notebook
    missing = unsourced_figures(nb)
    assert not missing, f"{path.name}: figures neither printed nor sourced (cell, figure): {missing}"


def test_the_prose_figure_rule_can_fail():
    """Catches: a rule that no longer reads the prose (a figure in a markdown cell is found, a printed one passes,
    a sourced one passes)."""
    def notebook_with(markdown, printed):
        return {"cells": [{"cell_type": "markdown", "source": [markdown]},
                          {"cell_type": "code", "source": ["print()"], "execution_count": 1,
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": [printed]}]}]}

    assert unsourced_figures(notebook_with("The run reached 26.9% and a loss of 4.26.", "")) == \
        [(0, "26.9%"), (0, "4.26")]
    assert unsourced_figures(notebook_with("The run reached 26.9%.", "accuracy 26.9%")) == []
    assert unsourced_figures(notebook_with("RoBERTa reached 94.8 (fairseq's README).", "")) == []
    assert unsourced_figures(notebook_with("Use `lr=0.001` and $\\beta = 0.98$.", "")) == []


def test_every_notebook_installs_the_release_of_its_package():
    """Catches: a notebook (course or student version) whose Colab setup installs another version of the package
    than the one it sits beside (the branch head for a release, or a release left behind when the version was
    bumped without `make notebooks`), and a version stated differently in the package and in pyproject.toml."""
    import roberta_from_scratch

    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert roberta_from_scratch.__version__ == version
    assert course.RELEASE == (None if ".dev" in version else f"v{version}")
    wanted = (f'install("{course.RELEASE}" if tagged else "{course.BRANCH}")' if course.RELEASE
              else f'install("{course.BRANCH}")')
    students = sorted((ROOT / course.ASSIGNMENT_DIR).glob("*.ipynb"))
    assert students
    for path in [*NOTEBOOKS, *students]:
        setup = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][1]["source"])
        assert wanted in setup, path.name
        assert len(re.findall(r"(?<!def )install\(", setup)) == 1, path.name


@pytest.mark.parametrize("tag_exists, pip_fails", [(True, False), (False, False), (True, True)])
def test_the_colab_setup_installs_the_release_and_falls_back_only_for_a_missing_tag(tag_exists, pip_fails,
                                                                                    monkeypatch, capsys):
    """Catches: a setup cell that installs the branch head when the release is tagged, that falls back to the
    branch on any failure (a network error or a dependency conflict would then install the wrong code), or that
    hides pip's error. Runs the cell's Colab branch with git and pip replaced by stand-ins."""
    import subprocess
    import sys
    import types

    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        if argv[0] == "git":
            return types.SimpleNamespace(returncode=0 if tag_exists else 2, stderr="")
        return types.SimpleNamespace(returncode=1 if pip_fails else 0, stderr="ERROR: ResolutionImpossible")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    cell = course.setup_cell(release="v9.9.9").split("from roberta_from_scratch.settings")[0]
    if pip_fails:
        with pytest.raises(RuntimeError, match="could not install roberta-from-scratch @ v9.9.9:\nERROR: Resol"):
            exec(cell, {})
        return
    exec(cell, {})
    installed = [argv[-1] for argv in calls if argv[0] == sys.executable]
    ref = "v9.9.9" if tag_exists else course.BRANCH
    assert installed == [f"roberta-from-scratch @ git+https://github.com/{course.REPOSITORY}@{ref}"]
    assert ("not tagged yet" in capsys.readouterr().out) is (not tag_exists)
