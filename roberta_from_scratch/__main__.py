"""``python -m roberta_from_scratch <command> [options]``: the course's command lines.

    python -m roberta_from_scratch pretrain --scale cpu --output-dir runs/cpu
    torchrun --nproc_per_node=4 -m roberta_from_scratch pretrain ...
    python -m roberta_from_scratch finetune --model runs/cpu/final --output-dir runs/topics
    python -m roberta_from_scratch assignments      # instructors: the student versions
    python -m roberta_from_scratch grade SUBMISSION.ipynb
    python -m roberta_from_scratch course sync      # maintainers: badges and setup cells
    python -m roberta_from_scratch reference        # maintainers: the reference model shipped with the package
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {  # name: (module, what it does)
    "pretrain": ("commands.pretrain", "masked-language-model pretraining (notebook 05)"),
    "finetune": ("commands.finetune", "finetune a pretrained encoder: classification, tagging, question answering"),
    "assignments": ("classroom.assignments", "build the student versions of the notebooks (instructors)"),
    "grade": ("classroom.grade", "grade a submitted notebook in a confined kernel (instructors)"),
    "reference": ("course.reference", "pretrain the course's reference model into the package (maintainers)"),
    "experiments": ("course.experiments", "re-run the course's experiments and cache their results (maintainers)"),
    "course": ("course.notebooks", "the notebooks' badges, setup cells and map (maintainers)"),
}


def usage() -> str:
    lines = ["usage: python -m roberta_from_scratch <command> [options]   (<command> --help for its options)", "",
             "commands:"]
    return "\n".join(lines + [f"  {name:<12} {about}" for name, (_, about) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(f"roberta_from_scratch.{COMMANDS[argv[0]][0]}")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
