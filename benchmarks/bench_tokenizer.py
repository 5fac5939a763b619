"""Tokenizer benchmark: our byte-level BPE against the Rust `tokenizers` library, side by side in one process.

Measures (on the python-docs corpus, offline):
  * training an 8,000-token vocabulary on the train split, ours vs `tokenizers`' BpeTrainer;
  * encoding throughput in MB/s of UTF-8 input, one call per document, ours (per-word cache, starting empty) vs
    `tokenizers` on the same vocabulary (its BPE cache starting empty too): every timed round encodes with fresh
    objects on both sides, built before the clock starts; runs alternate and the best of several is kept;
  * `encode_batch(fast=True)`: the `tokenizers` library itself on our vocabulary and merges, in one batch call
    (our wrapper around their code, not our implementation: it shows what batching in Rust adds).
Writes the table to benchmarks/results.md (section "tokenizer") and prints it.

    python benchmarks/bench_tokenizer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

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

    # Each timed round encodes with objects built for it (outside the timing), so that no side keeps a warm cache
    # from an earlier round: ours' per-word cache and tokenizers' BPE cache both start empty, a first pass over a
    # corpus. The objects are made just before their round; the functions below take them as arguments.
    def fresh_ours():
        return ByteLevelBPETokenizer(ours.vocab, ours.merges)

    def fresh_reference():
        return tokenizers.ByteLevelBPETokenizer(ours.vocab, ours.merges)

    def fresh_fast():  # our wrapper with its tokenizers backend already built (built fresh, empty cache)
        wrapper = fresh_ours()
        wrapper._fast_backend()
        return wrapper

    def encode_each(tok):  # one call per document, ours or tokenizers'
        for text in documents:
            tok.encode(text)

    def encode_fast(tok):
        tok.encode_batch(documents, fast=True)

    e_ours, e_ref, e_fast = [], [], []
    for _ in range(args.repeats):  # alternate, a fresh object per side per round
        for times, fresh, encode in ((e_ours, fresh_ours, encode_each), (e_ref, fresh_reference, encode_each),
                                     (e_fast, fresh_fast, encode_fast)):
            times.append(best_of(partial(encode, fresh()), 1))
    train_ours_s, train_ref_s = min(t_ours), min(t_ref)
    mbps_ours, mbps_ref, mbps_fast = megabytes / min(e_ours), megabytes / min(e_ref), megabytes / min(e_fast)
    rows = [
        "| measurement | ours | tokenizers | ours / tokenizers |",
        "|---|---|---|---|",
        f"| train {args.vocab_size:,}-token vocabulary on python-docs train ({len(train):,} documents) | "
        f"{train_ours_s:.2f} s | {train_ref_s:.2f} s | {train_ref_s / train_ours_s:.2f}x speed |",
        f"| encode python-docs train, one call per document ({megabytes:.2f} MB), cold caches (fresh objects) | "
        f"{mbps_ours:.2f} MB/s | {mbps_ref:.2f} MB/s | {mbps_ours / mbps_ref:.2f}x |",
        f"| encode with `encode_batch(fast=True)`: the tokenizers library itself, on our vocabulary and merges, one "
        f"batch call (not our code: our wrapper around theirs) | {mbps_fast:.2f} MB/s | {mbps_ref:.2f} MB/s | "
        f"{mbps_fast / mbps_ref:.2f}x (tokenizers batched / tokenizers per document) |",
        "",
        f"Same merges and vocabulary as tokenizers' trainer: {ours.vocab == train_reference().get_vocab()}. "
        f"Best of {args.repeats} alternating runs; each encoding run uses objects built for it before the timing "
        "(both sides start with empty caches; the batched row's tokenizers backend is built before its timing too). "
        f"{machine_line(tokenizers=tokenizers.__version__)}",
    ]
    table = "\n".join(rows)
    write_section("tokenizer", table)
    print(table)


if __name__ == "__main__":
    main()
