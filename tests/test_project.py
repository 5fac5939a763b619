"""The project's own promises: dependencies stated once, the README's commands, CI, the course map."""

import json
import re
import sys

import pytest
import yaml

from conftest import ROOT
from roberta_from_scratch.course import notebooks as course

sys.path.insert(0, str(ROOT / "tools"))
try:
    import constraints  # the maintainers' tool: its package-name normaliser serves here too
finally:
    sys.path.pop(0)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge names that differ from the PyPI ones
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def _parse(requirements) -> dict[str, str]:
    parsed = {}
    for requirement in requirements:
        name, spec = REQUIREMENT.match(requirement.split(";")[0]).groups()
        parsed[constraints.normalize(CONDA_TO_PYPI.get(name, name))] = spec.replace(" ", "")
    return parsed


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_names_the_same_dependencies_as_pyproject(pyproject):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = [], []
    for dep in env["dependencies"]:
        (pip.extend(dep["pip"]) if isinstance(dep, dict) else conda.append(dep))
    extras = pyproject["project"]["optional-dependencies"]
    declared = _parse(pyproject["project"]["dependencies"] + extras["lab"] + extras["test"])
    in_env = _parse([d for d in conda if not d.startswith(("python", "pip"))] + [d for d in pip if d != "-e ."])
    assert in_env == declared
    assert "-e ." in pip and "conda-forge" in env["channels"]
    python = next(d for d in conda if d.startswith("python"))
    assert python.replace(" ", "") == "python" + pyproject["project"]["requires-python"].replace(" ", "")


def test_dependencies_are_lower_bounds_not_pins(pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    specs = _parse(pyproject["project"]["dependencies"] + extras["lab"] + extras["test"])
    for name in ("torch", "matplotlib", "tqdm", "datasets", "safetensors", "huggingface-hub", "regex", "bertviz",
                 "jupyterlab", "pytest", "nbval", "hypothesis", "transformers"):
        assert specs.get(name, "").startswith(">="), (name, specs.get(name))
    assert not any("==" in s or "<" in s for s in specs.values()), specs


def test_the_runtime_install_is_lean(pyproject):
    """Catches: JupyterLab, nbgrader or the test tools back among what every Colab learner installs (the setup cell
    installs the runtime dependencies), and a library the notebooks import missing from them."""
    runtime = set(_parse(pyproject["project"]["dependencies"]))
    assert not runtime & {"jupyterlab", "notebook", "nbgrader", "pytest", "nbval", "hypothesis", "seqeval"}
    imported = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                imported |= set(re.findall(r"^\s*(?:from|import) ([A-Za-z_]\w*)", "".join(cell["source"]), re.M))
    third_party = imported - set(sys.stdlib_module_names) - {"roberta_from_scratch", "IPython"}
    distribution = {"sklearn": "scikit-learn", "yaml": "pyyaml"}  # import names that differ from the PyPI ones
    missing = {distribution.get(m, m) for m in third_party} - runtime - {"numpy"}  # numpy: torch's and matplotlib's
    assert not missing, f"the notebooks import {sorted(missing)}, which the runtime dependencies do not name"


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```(?:bash|sh)?\n(.*?)```", setup, flags=re.S | re.M)
    assert [c.strip() for c in commands] == ["make lab", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: unit notebooks-test$", makefile, flags=re.M)
    # The unit target runs the whole tests/ folder (options may come between pytest and the folder).
    assert re.search(r"^\t\$\(TEST_ENV\) \$\(BIN\)/python -m pytest( -\S+)* tests/$", makefile, flags=re.M)
    assert "--nbval-lax" in makefile and "RFS_SCALE=smoke" in makefile


def test_readme_course_map_is_the_packages():
    assert course.map_table() in (ROOT / "README.md").read_text()


def test_every_notebook_is_on_the_map_and_every_written_chapter_exists():
    on_disk = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    on_map = {ch.notebook for ch in course.COURSE_MAP}
    assert on_disk <= on_map
    assert {ch.notebook for ch in course.COURSE_MAP if ch.minutes} == on_disk


def test_data_card_describes_every_corpus():
    card = (ROOT / "data" / "README.md").read_text()
    from roberta_from_scratch.data import HUB_CLASSIFICATION, HUB_CORPORA
    from roberta_from_scratch.embeddings import RETRIEVAL_NAME

    for name in ["python-docs", "python-docs-topics", RETRIEVAL_NAME, *HUB_CORPORA, *HUB_CLASSIFICATION]:
        assert f"`{name}`" in card, name
    for source in [*HUB_CORPORA.values(), *HUB_CLASSIFICATION.values()]:
        assert source.path in card


def test_ci_runs_the_colab_and_the_lowest_versions():
    """Catches: the Colab-versions and lowest-versions runs dropped from CI; Colab constraints that pin torch's CUDA
    build (no CPU machine can install it) or lost Colab's transformers, datasets and kernel stack; lowest pins that
    do not follow pyproject.toml's bounds."""
    ci = (ROOT / ".ci" / "run").read_text()
    for target in ("test-colab", "test-min"):
        assert re.search(rf"^make {target} TORCH_SPEC=\S+$", ci, flags=re.M), target
    pins = constraints.parse_pins((ROOT / "tools" / "colab-constraints.txt").read_text())
    assert (pins["transformers"], pins["datasets"], pins["ipython"], pins["ipykernel"]) == \
        ("5.15.0", "4.0.0", "7.34.0", "6.17.1")
    assert not [name for name in pins if constraints.UNPINNED.match(name)]
    assert not [version for version in pins.values() if "+" in version]
    pyproject = (ROOT / "pyproject.toml").read_text()
    lows = dict(pin.split("==") for pin in constraints.lowest(pyproject))
    declared = _parse(constraints.runtime_dependencies(pyproject))
    assert {name: f">={version}" for name, version in lows.items()} == \
        {name: spec for name, spec in declared.items() if name != "torch"}
    names = constraints.names((ROOT / "tools" / "colab-constraints.txt").read_text(), pyproject)
    assert {"transformers", "datasets", "ipykernel", "ipython"} <= set(names) and "bertviz" not in names


def test_constraints_tool_reads_any_layout_of_pins_and_dependencies():
    """Catches: the constraints tool reading pyproject.toml with a regular expression (single quotes or a one-line
    list lost dependencies), a pin followed by a comment dropped, a version pip cannot parse crashing the check."""
    one_line = "[project]\nname = 'x'\ndependencies = ['torch>=2.4', \"numpy >= 1.26\", 'tqdm>=4.66; python_version>\"3\"']\n"
    assert constraints.runtime_dependencies(one_line) == ['torch>=2.4', 'numpy >= 1.26', 'tqdm>=4.66; python_version>"3"']
    assert constraints.lowest(one_line) == ["numpy==1.26", "tqdm==4.66"]
    pins = constraints.parse_pins("# Colab\nNumPy==2.0.2  # as of the list\nfoo_bar==1.0\n-e git+https://x\n")
    assert pins == {"numpy": "2.0.2", "foo-bar": "1.0"}
    assert constraints.check("pytest==not-a-version\n") == 1  # compared as text, not a crash
