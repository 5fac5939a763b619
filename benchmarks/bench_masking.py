"""Collator benchmark: our DataCollatorForMLM against transformers' DataCollatorForLanguageModeling.

The same packed python-docs blocks (128 tokens), the same batches of 32, alternating in one process; tokens/s is
the number of real tokens collated (padded, masked) per second, best of several rounds.

    python benchmarks/bench_masking.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from results import machine_line, write_section

from roberta_from_scratch import load_corpus
from roberta_from_scratch.packing import pack_dataset
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.course.artifacts import course_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    import transformers

    tokenizer = course_tokenizer(8000, verbose=False)
    blocks = list(pack_dataset(load_corpus(verbose=False)["train"], tokenizer, max_len=128)["input_ids"])
    batches = [[{"input_ids": b} for b in blocks[i:i + args.batch]] for i in range(0, len(blocks), args.batch)]
    tokens = sum(map(len, blocks))
    with tempfile.TemporaryDirectory() as tmp:
        hf_tokenizer = transformers.RobertaTokenizer.from_pretrained(str(tokenizer.save(tmp)))
    collators = {"ours": DataCollatorForMLM(tokenizer, seed=0),
                 "transformers": transformers.DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15,
                                                                              return_tensors="pt")}
    best = {name: float("inf") for name in collators}
    for _ in range(args.rounds):
        for name, collate in collators.items():
            start = time.perf_counter()
            for batch in batches:
                collate(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    rate = {name: tokens / seconds for name, seconds in best.items()}
    table = "\n".join([
        "| collator | tokens/s |",
        "|---|---|",
        f"| ours, DataCollatorForMLM | {rate['ours']:,.0f} |",
        f"| transformers DataCollatorForLanguageModeling | {rate['transformers']:,.0f} |",
        f"| ratio ours / transformers | {rate['ours'] / rate['transformers']:.2f}x |",
        "",
        f"{len(blocks):,} packed python-docs blocks of at most 128 tokens ({tokens:,} tokens), batches of "
        f"{args.batch}, best of {args.rounds} alternating rounds. {machine_line(transformers=transformers.__version__)}",
    ])
    write_section("masking collator", table)
    print(table)


if __name__ == "__main__":
    main()
