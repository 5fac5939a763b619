"""Version constraints for the second and third test environments (`make test-colab`, `make test-min`).

  python tools/constraints.py colab FREEZE          pip constraints from Colab's published `pip freeze`
  python tools/constraints.py lowest PYPROJECT      each runtime dependency held at its lower bound
  python tools/constraints.py names CONSTRAINTS PYPROJECT
                                                    the runtime dependencies (and the kernel stack) that the
                                                    constraints pin: what Colab has before the setup cell runs
  python tools/constraints.py check CONSTRAINTS     fail if an installed distribution differs from its pin
  python tools/constraints.py foreign CONSTRAINTS   installed distributions the constraints do not pin (torch and
                                                    what it requires excepted): what Colab does not have

torch and the CUDA libraries are left out of both: no CPU build of Colab's torch exists on the test machines, and
torch is installed first, by itself (TORCH_SPEC in the Makefile). Run `check` with the environment's own python.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# Not constrained: torch and what comes with its CUDA build; the packaging tools (the stand-in torch needs newer ones).
UNPINNED = re.compile(r"^(torch|torchvision|torchaudio|torchcodec|torchao|triton|nvidia-.*|cuda-.*|cupy-.*|pip|setuptools|wheel)$")
# What a Colab kernel runs on, so that nbval's kernels are Colab's too.
KERNEL_STACK = ("ipykernel", "ipython", "jupyter-client", "jupyter-core", "nbformat", "nbclient", "pytest")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")
LOWER_BOUND = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*>=\s*([^\s,;]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab(freeze: str) -> list[str]:
    """``name==version`` for every package of the freeze that pip can install as pinned (no URLs, no local
    versions such as ``+cu128``), less torch and the CUDA libraries."""
    pins = []
    for line in freeze.splitlines():
        match = PIN.match(line.strip())
        if match and "+" not in match.group(2) and not UNPINNED.match(normalize(match.group(1))):
            pins.append(f"{normalize(match.group(1))}=={match.group(2)}")
    return sorted(pins)


def runtime_dependencies(pyproject: str) -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml, as written (read as TOML: any quoting, any layout)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return list(tomllib.loads(pyproject)["project"]["dependencies"])


def lowest(pyproject: str) -> list[str]:
    """Each runtime dependency pinned at its lower bound (torch excepted)."""
    pins = []
    for requirement in runtime_dependencies(pyproject):
        match = LOWER_BOUND.match(requirement)
        if match is None:
            raise SystemExit(f"{requirement!r}: every dependency needs a lower bound (name>=version)")
        if not UNPINNED.match(normalize(match.group(1))):
            pins.append(f"{normalize(match.group(1))}=={match.group(2)}")
    return pins


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file; comments (whole lines or after a pin) are ignored."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return {normalize(m.group(1)): m.group(2) for m in map(PIN.match, lines) if m}


def names(constraints: str, pyproject: str) -> list[str]:
    pinned = parse_pins(constraints)
    wanted = [normalize(LOWER_BOUND.match(r).group(1)) for r in runtime_dependencies(pyproject)] + list(KERNEL_STACK)
    return [name for name in wanted if name in pinned]


def check(constraints: str) -> int:
    from packaging.version import InvalidVersion, Version  # installed with transformers wherever this checks

    def same(a: str, b: str) -> bool:  # 3.7 == 3.7.0, as for pip; versions pip cannot parse compare as text
        try:
            return Version(a) == Version(b)
        except InvalidVersion:
            return a == b

    pinned = parse_pins(constraints)
    installed = {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    held = sorted(name for name in pinned if name in installed)
    changed = [f"{name}: {installed[name]} installed, {pinned[name]} pinned" for name in held
               if not same(installed[name], pinned[name])]
    if changed:
        print("changed by the install:\n  " + "\n  ".join(changed))
        return 1
    print(f"{len(held)} installed packages at their pinned versions: " +
          ", ".join(f"{name} {pinned[name]}" for name in held))
    return 0


def foreign(constraints: str) -> list[str]:
    pinned = parse_pins(constraints)
    installed = {normalize(d.metadata["Name"]) for d in metadata.distributions()}
    keep = {normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)) for r in metadata.requires("torch") or []
            if "extra ==" not in r} if "torch" in installed else set()  # what torch needs stays
    return sorted(name for name in installed
                  if name not in pinned and name not in keep and not UNPINNED.match(name))


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("colab", "lowest", "names", "check", "foreign"):
        print(__doc__, file=sys.stderr)
        return 2
    texts = [Path(a).read_text(encoding="utf-8") for a in argv[1:]]
    if argv[0] == "check":
        return check(texts[0])
    if argv[0] == "foreign":
        print("\n".join(foreign(texts[0])))
        return 0
    lines = {"colab": lambda: colab(texts[0]), "lowest": lambda: lowest(texts[0]),
             "names": lambda: names(texts[0], texts[1])}[argv[0]]()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
