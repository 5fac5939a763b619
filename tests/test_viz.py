"""Notebook 07's helpers: inputs for bertviz, the HTML it builds from our attentions, static maps, head statistics."""

import json
import math
import re
import warnings

import pytest
import torch

from roberta_from_scratch import viz
from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

import bertviz  # noqa: E402,F401 (a declared dependency: a broken import must fail, not skip)


@pytest.fixture(scope="module")
def tokenizer(python_docs):
    corpus, _ = python_docs
    return ByteLevelBPETokenizer.train(list(corpus["train"]["text"][:400]), vocab_size=600)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, num_hidden_layers=3,
                                       num_attention_heads=4, max_position_embeddings=66)
    return RobertaForMaskedLM(config).eval()


def view_params(html: str) -> dict:
    """The data bertviz hands to its JavaScript (its template replaces PYTHON_PARAMS with this JSON)."""
    match = re.search(r"const params = (\{.*?\}); // HACK", html, re.S)
    assert match, "bertviz's params not found in the HTML"
    return json.loads(match.group(1))


def test_inputs_for_a_pair(model, tokenizer):
    """Catches: a pair laid out other than RoBERTa's <s> A </s></s> B </s>, a wrong sentence-B start, and attention
    weights that are not the model's: they must equal transformers' eager attention on the same weights (made
    large, so that small differences show) and the same ids."""
    import transformers

    from roberta_from_scratch.weights import to_hf_state_dict

    a, b = "Return the sum of the values.", "It raises an error."
    inp = viz.attention_inputs(model, tokenizer, a, b)
    ids = tokenizer.encode(a, b)
    assert inp.input_ids == ids
    assert inp.tokens[0] == "<s>" and inp.tokens[-1] == "</s>"
    start = inp.sentence_b_start
    assert inp.tokens[start - 1] == inp.tokens[start] == "</s>"
    assert "".join(inp.tokens[1:start - 1]) == a and "".join(inp.tokens[start + 1:-1]) == b
    assert len(inp.attentions) == 3
    assert model.training is False
    scrambled = RobertaForMaskedLM(model.config).eval()
    with torch.no_grad():
        for name, p in scrambled.named_parameters():  # far from the initialisation: sharp, distinct heads
            p.normal_(1.0, 0.3) if "norm" in name and name.endswith("weight") else p.normal_(0, 1.0)
    inp = viz.attention_inputs(scrambled, tokenizer, a, b)
    theirs = transformers.RobertaModel(transformers.RobertaConfig(**model.config.to_dict(),
                                                                  attn_implementation="eager"), add_pooling_layer=False)
    theirs.load_state_dict({k.removeprefix("roberta."): v for k, v in to_hf_state_dict(scrambled).items()
                            if k.startswith("roberta.")})
    reference = theirs.eval()(torch.tensor([ids]), output_attentions=True).attentions
    for ours, expected in zip(inp.attentions, reference):
        assert ours.shape == (1, 4, len(ids), len(ids))
        torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-4)  # fp32 softmax of large scores
    assert all((a.amax(-1) > 0.5).any() for a in inp.attentions)  # not uniform: the comparison compares something


def test_pretty_tokens_are_the_text(tokenizer):
    text = "tabs\tand\nnew lines:  two spaces, x"
    ids = tokenizer.encode(text, add_special_tokens=False)
    pretty = viz.pretty_tokens(tokenizer, ids)
    assert len(pretty) == len(ids) and "Ġ" not in "".join(pretty) and "Ċ" not in "".join(pretty)
    assert "".join(pretty).replace("\\n", "\n").replace("\\t", "\t") == text
    accents = tokenizer.encode("café Ünïcode", add_special_tokens=False)  # bytes of one character may split
    assert viz.pretty_tokens(tokenizer, accents) == [tokenizer.decode([i]) for i in accents]
    assert viz.pretty_tokens(tokenizer, [tokenizer.bos_token_id, tokenizer.mask_token_id]) == ["<s>", "<mask>"]
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        viz.pretty_tokens(tokenizer, [tokenizer.vocab_size + 5])


def test_input_longer_than_the_model(model, tokenizer):
    with pytest.raises(ValueError, match="at most 64"):
        viz.attention_inputs(model, tokenizer, "word " * 200)


@pytest.mark.parametrize("view", [viz.head_view, viz.model_view])
def test_views_carry_our_layers_heads_and_tokens(model, tokenizer, view):
    inp = viz.attention_inputs(model, tokenizer, "Open the file and read it.")
    params = view_params(view(inp.attentions, inp.tokens, html_action="return").data)
    (entry,) = params["attention"]
    assert entry["left_text"] == entry["right_text"] == inp.tokens
    torch.testing.assert_close(torch.tensor(entry["attn"]), torch.cat(inp.attentions))
    params = view_params(view(inp.attentions, inp.tokens, include_layers=[2, 0], html_action="return").data)
    torch.testing.assert_close(torch.tensor(params["attention"][0]["attn"]),
                               torch.cat([inp.attentions[2], inp.attentions[0]]))
    assert params["include_layers"] == [2, 0]


def test_pair_view_splits_at_sentence_b(model, tokenizer):
    inp = viz.attention_inputs(model, tokenizer, "Close the socket.", "Then exit.")
    params = view_params(viz.head_view(inp.attentions, inp.tokens, inp.sentence_b_start, html_action="return").data)
    by_name = {e["name"]: e for e in params["attention"]}
    start = inp.sentence_b_start
    assert by_name["Sentence A -> Sentence A"]["left_text"] == inp.tokens[:start]
    assert by_name["Sentence B -> Sentence B"]["left_text"] == inp.tokens[start:]
    torch.testing.assert_close(torch.tensor(by_name["Sentence A -> Sentence B"]["attn"]),
                               torch.cat(inp.attentions)[:, :, :start, start:])


def test_clear_errors(model, tokenizer):
    inp = viz.attention_inputs(model, tokenizer, "One two three.")
    batch = tuple(torch.cat([a, a]) for a in inp.attentions)
    with pytest.raises(ValueError, match=r"batch of 2 sequences.*a\[i:i \+ 1\]"):
        viz.head_view(batch, inp.tokens, html_action="return")
    with pytest.raises(ValueError, match=f"{len(inp.tokens) - 1} tokens were given for attention over "
                                         f"{len(inp.tokens)} positions"):
        viz.model_view(inp.attentions, inp.tokens[:-1], html_action="return")
    with pytest.raises(TypeError, match="output_attentions=True"):
        viz.head_view(inp.attentions[0], inp.tokens)
    with pytest.raises(ValueError, match="output_attentions=True"):
        viz.head_view([a[0] for a in inp.attentions], inp.tokens)
    with pytest.raises(ValueError, match="layers 0 to 2"):
        viz.head_view(inp.attentions, inp.tokens, include_layers=[3], html_action="return")
    with pytest.raises(ValueError, match="sentence_b_start"):
        viz.head_view(inp.attentions, inp.tokens, sentence_b_start=len(inp.tokens), html_action="return")
    with pytest.raises(ValueError, match="same forward pass"):
        viz.plot_attention_grid([inp.attentions[0], inp.attentions[1][:, :2]])


def naive_statistics(attn, ids, mask, bos, eos):
    """The same statistics by plain loops over queries, the definition written out."""
    layers, batch, heads, seq, _ = attn.shape
    out = {k: torch.zeros(layers, heads, dtype=torch.float64) for k in viz.STATISTICS}
    for layer in range(layers):
        for head in range(heads):
            sums = dict.fromkeys(viz.STATISTICS, 0.0)
            counts = dict.fromkeys(viz.STATISTICS, 0)
            for b in range(batch):
                for i in range(seq):
                    if not mask[b, i]:
                        continue
                    p = attn[layer, b, head, i].double()
                    values = {
                        "to <s>": float(p[ids[b] == bos].sum()), "to </s>": float(p[ids[b] == eos].sum()),
                        "self": float(p[i]),
                        "entropy": float(-sum(x * math.log(x) for x in p.tolist() if x > 0)),
                        "distance": float(sum(p[j] * abs(i - j) for j in range(seq))),
                    }
                    if i > 0 and mask[b, i - 1]:
                        values["previous"] = float(p[i - 1])
                    if i + 1 < seq and mask[b, i + 1]:
                        values["next"] = float(p[i + 1])
                    for k, v in values.items():
                        sums[k] += v
                        counts[k] += 1
            for k in viz.STATISTICS:
                out[k][layer, head] = sums[k] / max(counts[k], 1)
    return out


def test_head_statistics_equal_the_definition():
    torch.manual_seed(0)
    layers, batch, heads, seq = 2, 3, 3, 9
    ids = torch.randint(0, 6, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    logits = torch.randn(layers, batch, heads, seq, seq) * 2
    logits = logits.masked_fill(~mask.bool()[None, :, None, None, :], float("-inf"))
    attn = logits.softmax(-1)
    ours = viz.head_statistics(attn, ids, bos_token_id=0, eos_token_id=2, attention_mask=mask)
    reference = naive_statistics(attn, ids, mask, 0, 2)
    assert list(ours) == list(viz.STATISTICS)
    for k in viz.STATISTICS:
        torch.testing.assert_close(ours[k], reference[k].float(), rtol=1e-5, atol=1e-6, msg=k)


def test_head_statistics_on_known_patterns():
    seq = 8
    eye = torch.eye(seq)
    previous = torch.zeros(seq, seq)
    previous[0, 0] = 1
    previous[torch.arange(1, seq), torch.arange(seq - 1)] = 1
    uniform = torch.full((seq, seq), 1 / seq)
    attn = torch.stack([eye, previous, uniform])[None, None]  # 1 layer, batch 1, 3 heads
    ids = torch.arange(seq)[None]
    stats = viz.head_statistics(attn, ids, bos_token_id=0, eos_token_id=seq - 1)
    torch.testing.assert_close(stats["self"][0], torch.tensor([1.0, 1 / seq, 1 / seq]))
    torch.testing.assert_close(stats["previous"][0], torch.tensor([0.0, 1.0, 1 / seq]))
    torch.testing.assert_close(stats["entropy"][0], torch.tensor([0.0, 0.0, math.log(seq)]))
    torch.testing.assert_close(stats["to <s>"][0], torch.tensor([1 / seq, 2 / seq, 1 / seq]))
    assert viz.best_head(stats, "previous")[:2] == (0, 1)
    assert viz.best_head(stats, "entropy")[:2] == (0, 2)
    with pytest.raises(KeyError, match="choose one of"):
        viz.best_head(stats, "prev")
    with pytest.raises(ValueError, match="collect_attentions"):
        viz.head_statistics(attn[0], ids, 0, 1)
    table = viz.statistics_table(stats).splitlines()
    assert len(table) == 1 + 3 and table[2].split()[:2] == ["0", "1"]


def test_collect_attentions_matches_one_by_one(model, tokenizer):
    batch = tokenizer(["A short one.", "A somewhat longer sentence, with a comma."], return_tensors="pt")
    attn = viz.collect_attentions(model, batch["input_ids"], batch["attention_mask"], batch_size=1)
    assert attn.shape == (3, 2, 4, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    full = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True).attentions
    torch.testing.assert_close(attn, torch.stack(full))


def test_static_maps_and_png(model, tokenizer, tmp_path):
    import matplotlib.pyplot as plt

    inp = viz.attention_inputs(model, tokenizer, "Read a line.")
    fig = viz.plot_attention_grid(inp.attentions, inp.tokens, include_layers=[0, 2])
    maps = [ax for ax in fig.axes if ax.images]
    images = [ax.images[0].get_array() for ax in maps]
    assert len(images) == 2 * 4
    torch.testing.assert_close(torch.tensor(images[4 + 3].data), inp.attentions[2][0, 3])
    # one colour scale for every small map, from 0 to 1, and a colour bar that says so
    assert all(ax.images[0].get_clim() == (0, 1) for ax in maps)
    (bar,) = [ax for ax in fig.axes if not ax.images]
    assert bar.get_ylabel() == "attention weight" and tuple(bar.get_ylim()) == (0, 1)
    path = viz.save_png(fig, tmp_path / "figs" / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob("*.partial"))
    with pytest.raises(ValueError, match="PNG"):
        viz.save_png(fig, tmp_path / "grid.jpg")
    ax = viz.plot_head(inp.attentions, inp.tokens, layer=1, head=2)
    assert ax.images[0].get_clim()[1] == pytest.approx(float(inp.attentions[1][0, 2].max()))  # its own largest weight
    assert viz.plot_head(inp.attentions, inp.tokens, layer=1, head=2, vmax=1).images[0].get_clim() == (0, 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == [t.strip() if t.strip() == t else repr(t)[1:-1]
                                                           for t in inp.tokens]
    with pytest.raises(ValueError, match="3 layers x 4 heads"):
        viz.plot_head(inp.attentions, inp.tokens, layer=3, head=0)
    plt.close("all")


def test_maps_take_any_tensor_and_long_inputs_stay_readable(model, tokenizer, monkeypatch):
    """Catches: attentions that require grad (straight from a forward pass outside no_grad) failing in .numpy()
    inside matplotlib, a head plot of hundreds of tokens drawing every label into one black bar, and a bertviz
    view of a long input writing tens of MB of HTML without a word."""
    import matplotlib.pyplot as plt

    inp = viz.attention_inputs(model, tokenizer, "Read a line.")
    live = [a.clone().requires_grad_(True) for a in inp.attentions]
    fig = viz.plot_attention_grid(live, inp.tokens)
    torch.testing.assert_close(torch.tensor(fig.axes[0].images[0].get_array().data), inp.attentions[0][0, 0])
    viz.plot_head(live, inp.tokens, layer=0, head=0)
    seq = 3 * viz.MAX_TICK_LABELS + 1
    long = [torch.softmax(torch.randn(1, 4, seq, seq), -1) for _ in range(3)]
    tokens = [f"t{i}" for i in range(seq)]
    ax = viz.plot_head(long, tokens, layer=0, head=0)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) <= viz.MAX_TICK_LABELS and labels[:2] == ["t0", "t4"], labels[:3]
    assert "one label every 4 tokens" in ax.get_xlabel()
    plt.close("all")
    monkeypatch.setattr(viz, "HTML_WARN_BYTES", 5_000_000)  # 3 layers x 4 heads x 193^2 weights: about 9 MB
    with pytest.warns(UserWarning, match=r"193 tokens writes about 9 MB of HTML.*include_layers"):
        viz.head_view(long, tokens, html_action="return")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (bertviz itself leaves a file open: a ResourceWarning)
        viz.head_view(long, tokens, include_layers=[0], html_action="return")  # 1 layer: small enough
        viz.head_view(inp.attentions, inp.tokens, html_action="return")


def test_save_html_rewrites_the_libraries(model, tokenizer, tmp_path):
    inp = viz.attention_inputs(model, tokenizer, "Read a line.")
    view = viz.head_view(inp.attentions, inp.tokens, html_action="return")
    page = viz.save_html(view, tmp_path / "view.html", {"d3": "js/d3", "require": "js/require.js"}).read_text()
    assert page.startswith("<!DOCTYPE html>") and "js/d3" in page and "js/require.js" in page
    assert viz.CDN_LIBRARIES["d3"] not in page and viz.CDN_LIBRARIES["jquery"] in page
    with pytest.raises(ValueError, match="unknown library"):
        viz.save_html(view, tmp_path / "v.html", {"vue": "x"})
    with pytest.raises(TypeError, match="html_action='return'"):
        viz.save_html("<p>hello</p>", tmp_path / "v.html")


def test_classify_heads_thresholds_and_ties():
    """Catches: a share just below the threshold named after its kind, a tie broken by another order than HABITS',
    the broad/mixed split on the wrong side of its threshold."""
    import torch

    from roberta_from_scratch.viz import HABITS, classify_heads

    def stats(**values):
        base = {k: torch.zeros(1, 5) for k in (*HABITS, "entropy", "distance")}
        for key, row in values.items():
            base[key.replace("_", " ").replace("to s", "to <s>")] = torch.tensor([row])
        return base

    s = stats(previous=[0.5, 0.4999, 0.3, 0.2, 0.1], next=[0.0, 0.0, 0.3, 0.0, 0.0],
              entropy=[0.0, 0.8, 2.0, 1.6, 1.5999])
    got = classify_heads(s, uniform_entropy=2.0)
    assert got[0, 0] == ("previous", 0.5)
    assert got[0, 1][0] == "mixed" and abs(got[0, 1][1] - 0.4999) < 1e-6  # entropy 0.4 of uniform: not broad
    assert got[0, 2] == ("broad", 1.0)  # a tie of previous and next below the share: broad by its entropy
    assert got[0, 3] == ("broad", pytest.approx(0.8)) and got[0, 4][0] == "mixed"  # statistics are float32
    tie = classify_heads(stats(previous=[0.6, 0, 0, 0, 0], next=[0.6, 0, 0, 0, 0]), uniform_entropy=1.0)
    assert tie[0, 0] == ("previous", pytest.approx(0.6))  # the first of HABITS on a tie
