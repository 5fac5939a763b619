"""Tokenizer benchmark: our byte-level BPE against the Rust `tokenizers` library, side by side in one process.

Measures (on the python-docs corpus, offline):
  * training an 8,000-token vocabulary on the train split, ours vs `tokenizers`' BpeTrainer;
  * encoding throughput in MB/s of UTF-8 input, one call per document, ours (per-word cache, starting empty) vs
    `tokenizers` on the same vocabulary; runs alternate and the best of several is kept;
  * `encode_batch(fast=True)`: the `tokenizers` library itself on our vocabulary and merges, in one batch call
    (our wrapper around their code, not our implementation: it shows what batching in Rust adds).
Writes the table to benchmarks/results.md (section "tokenizer") and prints it.

    python benchmarks/bench_tokenizer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

from results import machine_line, write_section

from roberta_from_scratch import load_corpus
from roberta_from_scratch.tokenizer import SPECIAL_TOKENS, ByteLevelBPETokenizer


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()

    import tokenizers

    corpus = load_corpus(verbose=False)
    train = documents = list(corpus["train"]["text"])
    megabytes = sum(len(t.encode("utf-8")) for t in documents) / 1e6

    def train_ours():
        return ByteLevelBPETokenizer.train(train, vocab_size=args.vocab_size)

    def train_reference():
        ref = tokenizers.ByteLevelBPETokenizer()
        ref.train_from_iterator(train, vocab_size=args.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                show_progress=False)
        return ref

    t_ours, t_ref = [], []
    for _ in range(args.repeats):  # alternate so that both see the same machine state
        t_ours.append(best_of(train_ours, 1))
        t_ref.append(best_of(train_reference, 1))
    ours = train_ours()
    reference = tokenizers.ByteLevelBPETokenizer(ours.vocab, ours.merges)

    def encode_ours():
        ours._cache.clear()  # a cold cache: the honest figure for a first pass over a corpus
        for text in documents:
            ours.encode(text)

    def encode_reference():
        for text in documents:
            reference.encode(text)

    def encode_fast():
        ours._fast = None
        ours.encode_batch(documents, fast=True)

    e_ours, e_ref, e_fast = [], [], []
    for _ in range(args.repeats):
        e_ours.append(best_of(encode_ours, 1))
        e_ref.append(best_of(encode_reference, 1))
        e_fast.append(best_of(encode_fast, 1))
    train_ours_s, train_ref_s = min(t_ours), min(t_ref)
    mbps_ours, mbps_ref, mbps_fast = megabytes / min(e_ours), megabytes / min(e_ref), megabytes / min(e_fast)
    rows = [
        "| measurement | ours | tokenizers | ours / tokenizers |",
        "|---|---|---|---|",
        f"| train {args.vocab_size:,}-token vocabulary on python-docs train ({len(train):,} documents) | "
        f"{train_ours_s:.2f} s | {train_ref_s:.2f} s | {train_ref_s / train_ours_s:.2f}x speed |",
        f"| encode python-docs train, one call per document ({megabytes:.2f} MB), cold cache | "
        f"{mbps_ours:.2f} MB/s | {mbps_ref:.2f} MB/s | {mbps_ours / mbps_ref:.2f}x |",
        f"| encode with `encode_batch(fast=True)`: the tokenizers library itself, on our vocabulary and merges, one "
        f"batch call (not our code: our wrapper around theirs) | {mbps_fast:.2f} MB/s | {mbps_ref:.2f} MB/s | "
        f"{mbps_fast / mbps_ref:.2f}x (tokenizers batched / tokenizers per document) |",
        "",
        f"Same merges and vocabulary as tokenizers' trainer: {ours.vocab == train_reference().get_vocab()}. "
        f"Best of {args.repeats} alternating runs. {machine_line(tokenizers=tokenizers.__version__)}",
    ]
    table = "\n".join(rows)
    write_section("tokenizer", table)
    print(table)


if __name__ == "__main__":
    main()
