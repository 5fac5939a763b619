"""The course itself: its map, the repository the notebooks point to, and the cells every notebook starts with.

``REPOSITORY`` is the one setting behind every "Open in Colab" badge and every Colab install. A fork changes it
here and runs ``make notebooks`` (``python -m roberta_from_scratch course sync``), which rewrites the badge and the
setup cell of every notebook; a test checks that they agree with this file. The setup cell installs the release
the notebook was written for, ``RELEASE`` (the tag of the package's version, ``v{__version__}``), not the branch
head: a student version handed out in week 1 installs the same package in week 10.

The course map is kept here too, so the README's table and the tour notebook show the same thing
(``python -m roberta_from_scratch course map`` prints the table; a test checks the README holds it).
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import __version__

REPOSITORY = "roberta-from-scratch/roberta-from-scratch"  # GitHub owner/name
BRANCH = "main"  # where the badges open the notebooks
# The git tag the setup cells install: the release of this version. A development version (0.2.0.dev0, the state
# of main between releases) has no tag, so its setup cells install the branch head. README: cutting a release.
RELEASE = None if ".dev" in __version__ else f"v{__version__}"
NOTEBOOK_DIR = "notebooks"
ASSIGNMENT_DIR = "assignments"  # the student versions (python -m roberta_from_scratch assignments)


@dataclass(frozen=True)
class Chapter:
    notebook: str  # file name in notebooks/
    title: str
    build: str  # what you build
    see: str  # what you see
    # run time at smoke / cpu / gpu: smoke and cpu measured on 2 CPU cores; gpu an estimate for a Colab T4 ("est.",
    # from benchmarks/t4_estimates.py --column: FLOPs at an assumed MFU, peak memory) until a T4 run measures it
    minutes: tuple[str, str, str] | None

COURSE_MAP: tuple[Chapter, ...] = (
    Chapter("00_course_tour.ipynb", "Course tour", "nothing yet: check the environment, meet the data",
            "the corpus's statistics and document lengths, the labelled set's class balance", ("0.1", "0.1", "est. <1 (T4; CPU work only)")),
    Chapter("01_tokenizer.ipynb", "Byte-level BPE", "RoBERTa's tokenizer, trained on the corpus",
            "merges as they are learned, the compression curve, ids equal to the reference", ("0.2", "0.3", "est. <1 (T4; CPU work only)")),
    Chapter("02_attention.ipynb", "Attention", "scaled dot-product and multi-head self-attention",
            "attention maps, softmax saturation, the quadratic cost", ("0.2", "0.3", "est. <1 (T4), 1.9 GiB")),
    Chapter("03_encoder.ipynb", "The encoder", "the whole model in its own cells: LayerNorm, GELU, embeddings, "
            "post-LN layers, MLM and classification heads",
            "the model's map, logits equal to the package and to transformers, parameter counts",
            ("0.3", "0.4", "est. <1 (T4), 0.9 GiB")),
    Chapter("04_dynamic_masking.ipynb", "Packing and masking", "FULL-SENTENCES packing, dynamic MLM masking",
            "packed blocks, masking statistics, static versus dynamic masks", ("0.2", "0.2", "est. <1 (T4; CPU work only)")),
    Chapter("05_pretraining.ipynb", "Pretraining", "AdamW and the MLM training loop by hand, then with checkpoints",
            "the loop equal to Trainer, one batch learned by heart, accuracy at <mask> against four neighbour-count "
            "baselines with bootstrap intervals, fill-mask, static against dynamic masking over 3 seeds",
            ("0.7", "6.2", "est. 3.6-6.9 (T4), 7.3 GiB")),
    Chapter("06_finetuning.ipynb", "Finetuning", "classification on top of the pretrained encoder",
            "per-arm learning rates, 5 seeds, probes on <s> and on the mean, verdicts over seeds and test documents, "
            "label efficiency against random weights and bag of words",
            ("0.5", "3.2", "est. 1.0-1.6 (T4), 1.2 GiB")),
    Chapter("07_attention_visualization.ipynb", "Seeing attention", "bertviz views, head statistics, head ablation "
            "with a forward hook",
            "every head of the 4 x 4 reference model named against random initialisation, the habits forming over "
            "its training, the accuracy lost without each head; the learned position table",
            ("0.3", "0.3", "est. <1 (T4), 2.5 GiB")),
    Chapter("08_scaling_up.ipynb", "Scaling up", "mixed precision, accumulation, checkpointing, DDP/FSDP",
            "memory and time against model size, a two-process run", ("0.5", "0.5", "est. 1.6-2.8 (T4), 4.7 GiB")),
    Chapter("09_tagging_and_qa.ipynb", "Tagging and question answering", "labels aligned to BPE pieces, entity "
            "F1, a span head over overlapping windows, SQuAD's EM and F1",
            "pretrained against random weights over 3 seeds, beside a dictionary, word-overlap baselines and the QA "
            "set's own labelling rule, with bootstrap intervals",
            ("0.3", "3.5", "est. <1 (T4), 1.1 GiB")),
    Chapter("10_semantic_search.ipynb", "Semantic search", "mean and `<s>` pooling, anisotropy, SimCSE's "
            "contrastive loss (unsupervised and on docstring pairs), a cosine index and a search box",
            "recall@1, recall@10 and MRR over a thousand documents, 3 seeds, beside TF-IDF and BM25 (also on the "
            "encoder's window), chunked encoding, intervals over queries",
            ("0.2", "4.4", "est. 18-29 (T4), 3.3 GiB")),
    Chapter("11_beyond_roberta.ipynb", "Beyond RoBERTa", "pre-LN with a final LayerNorm, bias-free layers, GeGLU "
            "and SwiGLU, rotary positions, each checked against PyTorch's layer or the paper's formula",
            "every change at the same wall-clock budget over 3 seeds, a masking-rate sweep at 15% to 40%, tokens/s, "
            "and the topic classifier on top", ("0.2", "2.4", "est. 4.7-12 (T4), 4.3 GiB")),
)


def colab_url(notebook: str, repository: str = REPOSITORY, branch: str = BRANCH, folder: str = NOTEBOOK_DIR) -> str:
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/{folder}/{notebook}"


def badge(notebook: str, repository: str = REPOSITORY, branch: str = BRANCH, folder: str = NOTEBOOK_DIR) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook, repository, branch, folder)})")


_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def setup_cell(repository: str = REPOSITORY, branch: str = BRANCH, release: str | None = RELEASE) -> str:
    """The second cell of every notebook: in Colab, install the release this notebook was written for (only what
    Colab lacks; its torch is kept), or the branch head for a development version or while the release's tag is not
    pushed yet; everywhere, report versions and scale."""
    url = f"https://github.com/{repository}"
    if release is None:
        install = f'''    install("{branch}")  # a development version: the branch head'''
    else:
        install = f'''    tagged = subprocess.run(["git", "ls-remote", "--exit-code", "--tags", REPO, "refs/tags/{release}"],
                            capture_output=True).returncode == 0
    if not tagged:
        print("release {release} is not tagged yet: installing the branch head, which may not match this notebook")
    install("{release}" if tagged else "{branch}")'''
    return f'''# Setup. In Colab: install the package this notebook was written for (Colab's torch is kept).
# Everywhere: print versions, device, scale.
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:
    REPO = "{url}"

    def install(ref):
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"roberta-from-scratch @ git+{{REPO}}@{{ref}}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not install roberta-from-scratch @ {{ref}}:\\n{{done.stderr[-3000:]}}")
{install}

from roberta_from_scratch.settings import describe_environment

ENV = describe_environment()
SCALE = ENV.scale'''


def map_table(chapters: tuple[Chapter, ...] = COURSE_MAP) -> str:
    """The course map as a Markdown table: notebook, what you build, what you see, minutes at each scale."""
    lines = ["| notebook | you build | you see | smoke / cpu measured, gpu estimated (min; peak GPU memory) |",
             "|---|---|---|---|"]
    for ch in chapters:
        times = " / ".join(ch.minutes) if ch.minutes else "coming"
        link = f"[{ch.notebook[:2]} {ch.title}]({NOTEBOOK_DIR}/{ch.notebook})"
        lines.append(f"| {link} | {ch.build} | {ch.see} | {times} |")
    return "\n".join(lines)


def notebook_text(nb) -> str:
    """A notebook as the repository stores it (one layout for every writer, so diffs stay small)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def sync_notebook(path: Path, repository: str = REPOSITORY, branch: str = BRANCH,
                  release: str | None = RELEASE) -> bool:
    """Rewrite the badge in the first cell and the whole setup cell; return whether the file changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    wanted = badge(path.name, repository, branch)
    first = _BADGE.sub(wanted, first) if _BADGE.search(first) else first.rstrip("\n") + "\n\n" + wanted
    cells[0]["source"] = first.splitlines(keepends=True)
    setup = setup_cell(repository, branch, release)
    if len(cells) > 1 and cells[1]["cell_type"] == "code" and "describe_environment" in "".join(cells[1]["source"]):
        cells[1]["source"] = setup.splitlines(keepends=True)
    else:
        cells.insert(1, {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {},
                         "outputs": [], "source": setup.splitlines(keepends=True)})
    new = notebook_text(nb)
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="rewrite badges and setup cells of the notebooks from REPOSITORY/BRANCH")
    sync.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    sub.add_parser("map", help="print the course map as the README's Markdown table")
    args = parser.parse_args(argv)
    if args.command == "map":
        print(map_table())
        return
    paths = args.notebooks or sorted(Path(NOTEBOOK_DIR).glob("*.ipynb"))
    for path in paths:
        print(f"{path}: {'updated' if sync_notebook(path) else 'up to date'}")


if __name__ == "__main__":
    main()
