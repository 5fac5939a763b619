"""The benchmarks' results file: one Markdown section per benchmark, rewritten in place by the script that owns it."""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"
HEADER = ("# Benchmark results\n\nWritten by the scripts in this folder (`make bench`); each section is replaced "
          "when its script runs again. Ratios compare ours with the reference measured in the same process.\n")


def machine_line(**versions: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    listed = ", ".join([f"python {platform.python_version()}", f"torch {torch.__version__}",
                        *(f"{k} {v}" for k, v in versions.items())])
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    # the machine may be shared: its load (runnable processes, this one included) tells how busy it was
    load = f", load average over the last 15 minutes {os.getloadavg()[2]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"Machine: {cpu}, {os.cpu_count()} cores{load}, torch threads {torch.get_num_threads()}{gpu}; {listed}; "
            f"{date.today()}.")


def write_section(name: str, body: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    section = f"## {name}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", flags=re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def load_reference_weights(theirs, state_dict: dict) -> None:
    """Our weights (``weights.to_hf_state_dict``) into transformers' ``theirs``. ``to_hf_state_dict`` leaves out the
    keys that transformers ties to another one (``_tied_weights_keys``: the decoder's weight follows the word
    embeddings, its bias the head's bias), so those, and only those, may be missing, and each must still be the
    very tensor it is tied to (else it would keep its random initial value). Any other missing or unexpected key
    raises, with its name: a benchmark must not compare a half-loaded model."""
    tied = dict(getattr(theirs, "_tied_weights_keys", None) or {})  # {key: the key it follows}
    result = theirs.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if k not in tied]
    untied = [k for k in result.missing_keys
              if k in tied and theirs.get_parameter(k) is not theirs.get_parameter(tied[k])]
    if missing or result.unexpected_keys or untied:
        raise RuntimeError(f"loading our weights into {type(theirs).__name__}: missing {missing}, unexpected "
                           f"{list(result.unexpected_keys)}, tied keys not tied {untied}")


def dense_head_model(config):
    """Our RobertaForMaskedLM doing transformers' work: the MLM head on every position, the loss over the positions
    with a label. Beside the sparse head (the head on labelled positions only, fairseq's ``masked_tokens``) it
    separates the algorithmic saving from the speed of the implementation: the equal-work row of a benchmark."""
    import torch.nn.functional as F

    from roberta_from_scratch.model import ModelOutput, RobertaForMaskedLM

    class DenseHeadRobertaForMaskedLM(RobertaForMaskedLM):
        def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
            out = super().forward(input_ids, attention_mask, **kwargs)  # no labels: logits at every position
            loss = None
            if labels is not None:
                loss = F.cross_entropy(out.logits.view(-1, out.logits.shape[-1]).float(), labels.view(-1))
            return ModelOutput(loss=loss, logits=out.logits, last_hidden_state=out.last_hidden_state,
                               hidden_states=out.hidden_states, attentions=out.attentions)

    return DenseHeadRobertaForMaskedLM(config)
