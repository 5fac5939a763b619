"""Bitwise float checks carry their reason (issue 37: checks that hold on any machine).

``torch.equal``, ``numpy.array_equal`` and an ``assert_close`` or ``allclose`` with ``rtol=0`` and ``atol=0``
compare bit for bit. That holds only where both sides are the same arithmetic: the same operations on the same
shapes in the same order and thread count (a function against its own copy, a save and load round trip, a seeded
run repeated in one process), or integers and booleans. Between two different computations (another shape, batch
split, padding, kernel, device, precision or number of threads or processes) the last bits depend on the CPU and
its BLAS: notebook 08 compared a product over the padded 50,304-row matrix with one over the 50,265-row matrix,
and failed on an AMD EPYC with MKL on about half of the draws. Such comparisons use
``torch.testing.assert_close`` with a tolerance chosen for the dtype and said in a comment.

The test below makes every bitwise check in the tests and the notebooks' code cells say why it is exact: a comment
with the word "exact" (for instance ``# exact: integer ids``) on the call's line(s), on the line just above its
statement, or in the block of comment lines that ends there. A new check without one fails, naming the place.
"""

import ast
import io
import json
import re
import tokenize
from pathlib import Path

from conftest import ROOT

JUSTIFIED = re.compile(r"\bexact", re.IGNORECASE)
TOLERANT = {"assert_close", "allclose", "isclose", "assert_allclose"}  # bitwise only with rtol=0 and atol=0



def _zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 0


def _is_bitwise(call: ast.Call) -> bool:
    """torch.equal / tensor.equal, numpy's array_equal, or a tolerance check with rtol=0 and atol=0."""
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if name in ("equal", "array_equal"):
        return name == "array_equal" or isinstance(call.func, ast.Attribute)
    if name in TOLERANT:
        given = {k.arg: k.value for k in call.keywords}
        return "rtol" in given and "atol" in given and _zero(given["rtol"]) and _zero(given["atol"])
    return False


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    found = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string
    except (tokenize.TokenError, IndentationError):
        pass
    return found


BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.If, ast.Try)  # a reason above covers them


def unjustified_checks(source: str) -> list[tuple[int, str]]:
    """(line, text) of each bitwise comparison in ``source`` (Python) without a comment saying why it is exact.
    Where a reason may stand: on the call's lines or its statement's; on the line above the statement, or in the
    comment block ending there; and the same for each loop, ``with`` or ``if`` around it (its header line too), up
    to the enclosing function. Calls only: text inside strings (a synthetic notebook's code) is data, not a check."""
    tree = ast.parse(source)
    lines = source.splitlines()
    comments = _comments(source)
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def above(statement: ast.stmt) -> list[int]:  # the line above it and the comment block that ends there
        found, line = [statement.lineno - 1], statement.lineno - 1
        while line >= 1 and lines[line - 1].lstrip().startswith("#"):
            found.append(line)
            line -= 1
        return found

    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _is_bitwise(node)):
            continue
        statement = node
        while statement in parent and not isinstance(statement, ast.stmt):
            statement = parent[statement]
        start = statement.lineno if isinstance(statement, ast.stmt) else node.lineno
        near = list(range(start, node.end_lineno + 1))
        if isinstance(statement, ast.stmt):
            near += above(statement)
            block = parent.get(statement)
            while isinstance(block, BLOCKS):
                near += above(block) + list(range(block.lineno, block.body[0].lineno))  # and its header
                block = parent.get(block)
        if not any(JUSTIFIED.search(comments.get(line, "")) for line in near):
            bad.append((node.lineno, lines[node.lineno - 1].strip()))
    return sorted(bad)


def _python_of(cell_source: str) -> str:
    """A code cell as Python: IPython's % and ! lines become comments, so that line numbers stay the cell's."""
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


def sources() -> list[tuple[str, str]]:
    """(place, Python source) of every test module and every notebook code cell."""
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        found.append((f"tests/{path.name}", path.read_text(encoding="utf-8")))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                found.append((f"notebooks/{path.name} cell {index}", _python_of(source)))
    return found


def test_every_bitwise_float_check_says_why_it_is_exact():
    """Catches: a torch.equal (or a zero tolerance) between two different computations, added without thought:
    it passes where it was written and fails on another CPU. Keep it only with a comment saying why the two sides
    are the same arithmetic; otherwise compare with assert_close and a tolerance for the dtype, said in a comment."""
    offenders = []
    for place, source in sources():
        offenders += [f"{place}, line {line}: {text}" for line, text in unjustified_checks(source)]
    assert not offenders, (
        "bitwise comparisons without a reason (add a comment with 'exact: why' where both sides are the same "
        "arithmetic or integers; otherwise use torch.testing.assert_close with a tolerance for the dtype):\n"
        + "\n".join(offenders))


def test_the_scan_catches_an_unjustified_check_and_accepts_a_reason():
    """The scan itself: it must flag a bare check, in any of its forms, and accept each documented place of the
    reason; a reason two lines away or a check inside a string must not count."""
    call = "torch" + ".equal("  # spelled apart, so that a search of the sources for the call does not land here
    bare = f"import torch\na = torch.ones(3)\nassert {call}a @ a, a.sum())\n"
    assert unjustified_checks(bare) == [(3, f"assert {call}a @ a, a.sum())")]
    assert unjustified_checks("assert not a.equal(b)\n")  # the tensor method too
    assert unjustified_checks("import numpy as np\nassert np.array_equal(x, y)\n")
    assert unjustified_checks("torch.testing.assert_close(x, y, atol=0, rtol=0.0)\n")
    assert not unjustified_checks("torch.testing.assert_close(x, y, atol=1e-6, rtol=0)\n")  # a tolerance
    assert unjustified_checks(f"x = 1  # exact\n\nassert {call}a, b)\n")  # two lines away
    assert unjustified_checks(f"# exact: for the line below\nx = 1\nassert {call}a, b)\n")  # another statement's
    assert not unjustified_checks(f"s = '{call}a, b)'\n")  # a string is data

    assert not unjustified_checks(f"assert {call}a, b)  # exact: integer ids\n")
    assert not unjustified_checks(f"# exact: the same function on the same input\nassert {call}a, b)\n")
    assert not unjustified_checks(f"# Exactly the same computation:\n# the weights saved and loaded.\n"
                                  f"assert {call}a, b)\n")  # a comment block ending on the line above
    assert not unjustified_checks(f"assert {call}a,\n                   b)  # exact: integers\n")
    assert not unjustified_checks(f"# exact: a copy\nassert all({call}x, y)\n           for x, y in pairs)\n")
    assert not unjustified_checks(f"assert (n == 3 and  # exact: integers\n        {call}a, b))\n")
    assert not unjustified_checks(f"# Exact: the same run twice.\nfor a, b in pairs:\n    assert {call}a, b)\n")
    assert not unjustified_checks(f"for a, b in pairs:  # exact: integers\n    assert {call}a, b)\n")
    assert unjustified_checks(f"# exact, all of them\ndef test():\n    assert {call}a, b)\n")  # not a whole test
    assert unjustified_checks(f"for a, b in pairs:\n    x = 1  # exact\n    y = 2\n    assert {call}a, b)\n")


def test_notebook_cells_are_read_as_python():
    assert _python_of("%time x = 1\n!ls\ny = 2") == "# %time x = 1\n# !ls\ny = 2"
    places = [place for place, _ in sources()]
    assert "tests/test_exactness.py" in places and any(" cell " in p for p in places)
    assert {"tests/test_training.py", "tests/test_device_audit.py"} <= {p.split(" cell ")[0] for p in places}
    assert sum(" cell " in p for p in places) > 100  # every notebook's code cells
