"""Seeing attention (notebook 07): bertviz views of our model, static maps, and per-head statistics.

Our models return ``attentions`` as one (batch, heads, seq, seq) tensor per layer, which is bertviz's format, so
the interactive views need only the tokens. Where JavaScript does not run (GitHub's notebook viewer, a PDF, a
printed assignment), the matplotlib versions draw the same maps. The head statistics follow Clark et al. 2019
("What Does BERT Look At?", arXiv 1906.04341): how much of each head's attention goes to ``<s>``, to ``</s>``, to
the previous, the next and the same token, how spread out it is (entropy) and how far it reaches (distance).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .model import evaluating

# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class AttentionInputs:
    """One sequence ready for the views: its ids, readable tokens, the attention maps and where sentence B starts."""

    input_ids: list[int]
    tokens: list[str]
    attentions: tuple[torch.Tensor, ...]  # one (1, heads, seq, seq) float tensor per layer, on the CPU
    sentence_b_start: int | None = None


def pretty_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id as the text it stands for: 'Ġcat' becomes ' cat', 'Ċ' a newline shown as '\\n'."""
    tokens = []
    for i in ids:
        token = tokenizer.id_to_token(int(i))
        if token is None:
            raise ValueError(f"token id {int(i)} is not in the tokenizer's vocabulary of {tokenizer.vocab_size}: "
                             "use the tokenizer the model was trained with")
        text = token if token in tokenizer.special_tokens else tokenizer.decode([int(i)])
        tokens.append(text.replace("\n", "\\n").replace("\t", "\\t"))
    return tokens


@torch.no_grad()
def attention_inputs(model, tokenizer, text: str, text_pair: str | None = None) -> AttentionInputs:
    """Run ``model`` on one text (or a pair, laid out ``<s> A </s></s> B </s>``) and collect its attention maps.

    ``sentence_b_start`` is the index of the second ``</s>``, which opens sentence B: the first closes A.
    """
    ids = tokenizer.encode(text, text_pair)
    limit = model.config.max_tokens
    if len(ids) > limit:
        raise ValueError(f"the input is {len(ids)} tokens long but the model takes at most {limit}: "
                         "shorten the text (long inputs also make the views slow)")
    with evaluating(model):
        device = next(model.parameters()).device
        out = model(torch.tensor([ids], device=device), output_attentions=True)
    attentions = tuple(a.float().cpu() for a in out.attentions)
    b_start = None
    if text_pair is not None:
        b_start = len(tokenizer.encode(text))  # <s> A </s> is len(A) + 2 tokens; the next, a </s>, opens B
    return AttentionInputs(ids, pretty_tokens(tokenizer, ids), attentions, b_start)


def check_attention(attentions, tokens: Sequence[str] | None = None) -> tuple[int, int, int]:
    """Check that ``attentions`` is what bertviz draws; return (layers, heads, seq). Errors say how to fix it."""
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, (list, tuple)) or not attentions:
        raise TypeError("attentions must be a list or tuple with one (1, heads, seq, seq) tensor per layer, "
                        "as returned by model(..., output_attentions=True).attentions")
    shape = None
    for index, a in enumerate(attentions):
        if not isinstance(a, torch.Tensor) or a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"attentions[{index}] is {got}; each layer must be a (1, heads, seq, seq) tensor: "
                             "call the model with output_attentions=True")
        if a.shape[0] != 1:
            raise ValueError(f"attentions hold a batch of {a.shape[0]} sequences, but a view shows one: pass one "
                             f"example, e.g. [a[i:i + 1] for a in attentions]")
        if shape is not None and a.shape != shape:
            raise ValueError(f"attentions[{index}] has shape {tuple(a.shape)} but attentions[0] has {tuple(shape)}: "
                             "all layers must come from the same forward pass")
        shape = a.shape
    _, heads, seq, _ = shape
    if tokens is not None and len(tokens) != seq:
        raise ValueError(f"{len(tokens)} tokens were given for attention over {seq} positions: pass exactly one "
                         "token per position of the sequence the model saw (including <s>, </s> and padding)")
    return len(attentions), heads, seq


def _check_layers(include_layers, layers: int) -> list[int] | None:
    if include_layers is None:
        return None
    include_layers = [int(i) for i in include_layers]
    bad = [i for i in include_layers if not 0 <= i < layers]
    if bad or not include_layers:
        raise ValueError(f"include_layers={include_layers}: the model has layers 0 to {layers - 1}; "
                         "give a non-empty list of those")
    return include_layers


# ----------------------------------------------------------------------------------------------- bertviz


# bertviz writes every weight of the layers it shows into the page as text, about 20 bytes each: beyond this many
# bytes notebooks and browsers slow down (600 tokens x 12 layers x 12 heads is over 60 MB).
HTML_WARN_BYTES = 20_000_000
BYTES_PER_WEIGHT = 20


def _bertviz(view, attentions, tokens, sentence_b_start, include_layers, html_action):
    """Check our inputs, then hand them to one of bertviz's views (tokens already readable: no prettifying)."""
    layers, heads, seq = check_attention(attentions, tokens)
    if sentence_b_start is not None and not 0 < sentence_b_start < seq:
        raise ValueError(f"sentence_b_start={sentence_b_start} must fall inside the sequence (1 to {seq - 1})")
    shown = _check_layers(include_layers, layers)
    size = len(shown or range(layers)) * heads * seq * seq * BYTES_PER_WEIGHT
    if size > HTML_WARN_BYTES:
        warnings.warn(f"this view of {seq} tokens writes about {size / 1e6:.0f} MB of HTML, which slows the notebook "
                      "and the browser: show fewer layers (include_layers=[...]) or a shorter input "
                      "(truncate the text)", stacklevel=3)
    return view([a.detach().float().cpu() for a in attentions], list(tokens), sentence_b_start=sentence_b_start,
                prettify_tokens=False, include_layers=shown, html_action=html_action)


def _image(weights: torch.Tensor):
    """One head's map as an array for matplotlib, whatever the tensor's device, dtype and autograd state."""
    return weights.detach().float().cpu().numpy()


def head_view(attentions, tokens: Sequence[str], sentence_b_start: int | None = None,
              include_layers: Sequence[int] | None = None, html_action: str = "view"):
    """bertviz's head view of our attentions (checked first). ``html_action="return"`` gives the HTML object."""
    from bertviz import head_view as view

    return _bertviz(view, attentions, tokens, sentence_b_start, include_layers, html_action)


def model_view(attentions, tokens: Sequence[str], sentence_b_start: int | None = None,
               include_layers: Sequence[int] | None = None, html_action: str = "view"):
    """bertviz's model view (every layer and head at once) of our attentions."""
    from bertviz import model_view as view

    return _bertviz(view, attentions, tokens, sentence_b_start, include_layers, html_action)


# ----------------------------------------------------------------------------------------------- static maps


def plot_attention_grid(attentions, tokens: Sequence[str] | None = None, include_layers=None, cell: float = 1.6,
                        title: str | None = None):
    """A layer x head grid of small attention maps (rows: queries, columns: keys), all on one colour scale from 0
    to 1, drawn in a colour bar beside the grid. Returns the figure."""
    import matplotlib.pyplot as plt

    layers, heads, seq = check_attention(attentions, tokens)
    rows = _check_layers(include_layers, layers) or list(range(layers))
    fig, axes = plt.subplots(len(rows), heads, figsize=(cell * heads + 0.6, cell * len(rows) + 0.6), squeeze=False)
    for r, layer in enumerate(rows):
        for h in range(heads):
            ax = axes[r][h]
            image = ax.imshow(_image(attentions[layer][0, h]), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if h == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
    fig.suptitle(title or f"attention maps ({seq} tokens; rows: queries, columns: keys)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    bar = fig.add_axes((0.92, 0.15, 0.02, 0.7))  # beside the grid, after tight_layout placed it
    fig.colorbar(image, cax=bar, label="attention weight")
    return fig


MAX_TICK_LABELS = 64  # tick labels per axis of plot_head; more would overlap into a black bar


def plot_head(attentions, tokens: Sequence[str], layer: int, head: int, ax=None, title: str | None = None,
              vmax: float | None = None):
    """One head's map with the tokens on both axes and a colour bar from 0 to ``vmax`` (default: the map's largest
    weight, so that a head whose weights are all small still shows its pattern). Returns the axes."""
    import matplotlib.pyplot as plt

    layers, heads, seq = check_attention(attentions, tokens)
    if not (0 <= layer < layers and 0 <= head < heads):
        raise ValueError(f"layer {layer}, head {head} does not exist: the model has {layers} layers x {heads} heads")
    if ax is None:
        size = min(9.0, 1.5 + 0.28 * seq)
        _, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(_image(attentions[layer][0, head]), cmap="viridis", vmin=0, vmax=vmax)
    labels = [repr(t)[1:-1] if t.strip() != t else t for t in tokens]
    every = -(-seq // MAX_TICK_LABELS)  # beyond MAX_TICK_LABELS tokens, label every k-th position only
    ticks = range(0, seq, every)
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=8)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=8)
    if every > 1:
        ax.set_xlabel(f"key (attended to; one label every {every} tokens)")
    if every == 1:
        ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title or f"layer {layer}, head {head}")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


def save_png(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG (folders created; written to a temporary file, then renamed). Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path} does not end in .png: save_png writes PNG files")
    from .files import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))


# ----------------------------------------------------------------------------------------------- head statistics

STATISTICS = ("to <s>", "to </s>", "previous", "next", "self", "entropy", "distance")


@torch.no_grad()
def collect_attentions(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       batch_size: int = 16) -> torch.Tensor:
    """Attention maps for many sequences: a (layers, batch, heads, seq, seq) float tensor on the CPU."""
    device = next(model.parameters()).device
    chunks = []
    with evaluating(model):
        for start in range(0, len(input_ids), batch_size):
            ids = input_ids[start:start + batch_size].to(device)
            mask = None if attention_mask is None else attention_mask[start:start + batch_size].to(device)
            out = model(ids, attention_mask=mask, output_attentions=True)
            chunks.append(torch.stack([a.float().cpu() for a in out.attentions]))
    return torch.cat(chunks, dim=1)


def head_statistics(attentions: torch.Tensor, input_ids: torch.Tensor, bos_token_id: int, eos_token_id: int,
                    attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-head averages over every real query position, each a (layers, heads) tensor.

    ``attentions`` is (layers, batch, heads, seq, seq) as from :func:`collect_attentions`. For query i with weights
    p_ij over keys j: "to <s>" / "to </s>" sum p_ij over keys holding that token; "previous", "next" and "self" are
    p_i,i-1, p_i,i+1 and p_ii (a query with no previous or next real token is left out of that average);
    "entropy" is -sum_j p_ij ln p_ij in nats; "distance" is sum_j p_ij |i - j| in tokens.
    """
    if attentions.dim() != 5:
        raise ValueError(f"attentions must be (layers, batch, heads, seq, seq), got {tuple(attentions.shape)}: "
                         "use collect_attentions")
    _, batch, _, seq, _ = attentions.shape
    if tuple(input_ids.shape) != (batch, seq):
        raise ValueError(f"input_ids has shape {tuple(input_ids.shape)} but the attentions are over "
                         f"{batch} sequences of {seq} tokens")
    real = torch.ones(batch, seq, dtype=torch.bool) if attention_mask is None else attention_mask.bool().cpu()
    ids = input_ids.cpu()
    p = attentions.double()
    positions = torch.arange(seq)

    def average(values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        # values: (layers, batch, heads, seq) per query; queries: (batch, seq) which queries count
        w = queries.to(values.dtype)[None, :, None, :]
        return ((values * w).sum(dim=(1, 3)) / w.sum(dim=(1, 3)).clamp_min(1)).float()

    key_is = lambda token: (ids == token).to(p.dtype)[None, :, None, None, :]  # noqa: E731
    shifted_prev = torch.zeros_like(real)
    shifted_prev[:, 1:] = real[:, 1:] & real[:, :-1]
    shifted_next = torch.zeros_like(real)
    shifted_next[:, :-1] = real[:, :-1] & real[:, 1:]
    prev = torch.zeros(p.shape[:-1], dtype=p.dtype)
    prev[..., 1:] = p.diagonal(offset=-1, dim1=-2, dim2=-1)
    nxt = torch.zeros(p.shape[:-1], dtype=p.dtype)
    nxt[..., :-1] = p.diagonal(offset=1, dim1=-2, dim2=-1)
    distance = (positions[:, None] - positions[None, :]).abs().to(p.dtype)
    return {
        "to <s>": average((p * key_is(bos_token_id)).sum(-1), real),
        "to </s>": average((p * key_is(eos_token_id)).sum(-1), real),
        "previous": average(prev, shifted_prev),
        "next": average(nxt, shifted_next),
        "self": average(p.diagonal(dim1=-2, dim2=-1), real),
        "entropy": average(-torch.special.xlogy(p, p).sum(-1), real),
        "distance": average((p * distance).sum(-1), real),
    }


HABITS = ("previous", "next", "self", "to <s>", "to </s>")  # the kinds of key a head can be named after
HEAD_CLASSES = (*HABITS, "broad", "mixed")


def classify_heads(statistics: dict[str, torch.Tensor], uniform_entropy: float, share: float = 0.5,
                   broad: float = 0.8) -> dict[tuple[int, int], tuple[str, float]]:
    """Each head's habit, after Clark et al. 2019: ``{(layer, head): (class, value)}``. The class is the kind of
    key (HABITS, the first of them on a tie) that gets at least ``share`` of the head's attention, with that share
    as the value; else "broad" when the head's entropy is at least ``broad`` times ``uniform_entropy`` (the value:
    that fraction), else "mixed" (the value: its largest share). ``statistics``: from :func:`head_statistics`."""
    classes = {}
    layers, heads = statistics["previous"].shape
    for layer in range(layers):
        for head in range(heads):
            kind, value = max(((k, float(statistics[k][layer, head])) for k in HABITS), key=lambda kv: kv[1])
            spread = float(statistics["entropy"][layer, head]) / uniform_entropy
            classes[layer, head] = ((kind, value) if value >= share else
                                    ("broad", spread) if spread >= broad else ("mixed", value))
    return classes


def best_head(statistics: dict[str, torch.Tensor], name: str) -> tuple[int, int, float]:
    """The (layer, head, value) with the largest value of one statistic, e.g. ``best_head(stats, "previous")``."""
    if name not in statistics:
        raise KeyError(f"no statistic {name!r}: choose one of {', '.join(statistics)}")
    table = statistics[name]
    index = int(table.argmax())
    layer, head = divmod(index, table.shape[1])
    return layer, head, float(table[layer, head])


def pad_blocks(blocks: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token blocks of different lengths as one padded (batch, longest) id tensor and its mask (1 = token)."""
    if not len(blocks):
        raise ValueError("no blocks: give at least one sequence of token ids")
    longest = max(len(b) for b in blocks)
    ids = torch.full((len(blocks), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(blocks), longest, dtype=torch.long)
    for i, block in enumerate(blocks):
        ids[i, :len(block)] = torch.as_tensor(list(block), dtype=torch.long)
        mask[i, :len(block)] = 1
    return ids, mask


def uniform_entropy(attention_mask: torch.Tensor) -> float:
    """The entropy (nats) of uniform attention over the real keys, averaged over the real queries: a sequence of n
    tokens gives each of its n queries ln n."""
    lengths = attention_mask.sum(1).double()
    lengths = lengths[lengths > 0]
    return float((lengths * lengths.log()).sum() / lengths.sum())


def statistics_table(statistics: dict[str, torch.Tensor]) -> str:
    """A plain-text table, one row per head, one column per statistic."""
    names = list(statistics)
    layers, heads = statistics[names[0]].shape
    lines = ["layer head " + " ".join(f"{n:>9}" for n in names)]
    for layer in range(layers):
        for head in range(heads):
            lines.append(f"{layer:>5} {head:>4} " + " ".join(f"{float(statistics[n][layer, head]):>9.3f}"
                                                            for n in names))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- standalone pages

# The three libraries bertviz's views load from a CDN when they are drawn (bertviz 1.4).
CDN_LIBRARIES = {
    "require": "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js",
    "d3": "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min",  # require.js appends ".js"
    "jquery": "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min",
}


def save_html(view, path: str | os.PathLike, libraries: dict[str, str] | None = None) -> Path:
    """Write a view from ``head_view(..., html_action="return")`` as a page that opens in any browser.

    ``libraries`` maps "require", "d3" and "jquery" to other locations (local copies, for a machine with no
    internet; d3 and jquery without their ".js"), replacing bertviz's CDN addresses.
    """
    html = getattr(view, "data", view)
    if not isinstance(html, str) or "bertviz-" not in html:
        raise TypeError("save_html takes the HTML that head_view/model_view return with html_action='return'")
    for name, url in (libraries or {}).items():
        if name not in CDN_LIBRARIES:
            raise ValueError(f"unknown library {name!r}: the views load {', '.join(CDN_LIBRARIES)}")
        if CDN_LIBRARIES[name] not in html:
            raise ValueError(f"the view does not load {name} from {CDN_LIBRARIES[name]}: "
                             "this bertviz version may load other files")
        html = html.replace(CDN_LIBRARIES[name], url)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>attention</title></head>\n'
                    f"<body>\n{html}\n</body></html>\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- head ablation


def _attention_modules(model):
    encoder = getattr(model, "roberta", model)  # a task model or the bare encoder
    return [layer.attention for layer in encoder.layers]


@contextlib.contextmanager
def heads_masked(model, heads):
    """Within the ``with`` block, the heads in ``heads`` (``(layer, head)`` pairs) contribute nothing: each one's
    slice of the context vectors that the attention's output projection mixes is set to zero. This is the head mask
    of Michel et al. 2019 (arXiv 1905.10650) at 0, done with a forward pre-hook on each ``attention.output``."""
    modules = _attention_modules(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not (0 <= layer < len(modules) and 0 <= head < modules[0].num_heads):
            raise ValueError(f"layer {layer}, head {head} does not exist: the model has {len(modules)} layers x "
                             f"{modules[0].num_heads} heads (count from 0)")
        by_layer.setdefault(layer, []).append(head)

    def silence(module, chosen):
        def hook(_, inputs):
            context = inputs[0].clone()  # (batch, tokens, heads * head_dim): the heads' outputs side by side
            context.view(*context.shape[:-1], module.num_heads, module.head_dim)[..., chosen, :] = 0
            return (context, *inputs[1:])
        return hook

    handles = [modules[layer].output.register_forward_pre_hook(silence(modules[layer], chosen))
               for layer, chosen in by_layer.items()]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def head_ablation(model, batches: list[dict], device=None) -> torch.Tensor:
    """The held-out masked-token accuracy with each head masked out in turn (:func:`heads_masked`), on the fixed
    ``batches`` (``training.masked_heldout``): a (layers, heads) tensor."""
    from .settings import pick_precision
    from .training import evaluate

    device = device or next(model.parameters()).device
    precision = pick_precision(device)
    modules = _attention_modules(model)
    accuracy = torch.zeros(len(modules), modules[0].num_heads, dtype=torch.float64)
    for layer in range(len(modules)):
        for head in range(modules[0].num_heads):
            with heads_masked(model, [(layer, head)]):
                accuracy[layer, head] = evaluate(model, batches, device, precision)["accuracy"]
    return accuracy
