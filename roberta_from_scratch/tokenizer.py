"""RoBERTa's byte-level BPE tokenizer, from raw text to ids and back (notebook 01).

Three steps turn text into ids:

1. Bytes. Text is UTF-8 encoded and each of the 256 byte values is shown as one printable character
   (:func:`bytes_to_unicode`; a space becomes 'Ġ', a newline 'Ċ'), so every string can be tokenized and nothing is
   ever unknown.
2. Pre-tokenisation. GPT-2's regular expression cuts the text into words, numbers, punctuation runs and spaces;
   merges never cross these pieces.
3. BPE. Each piece starts as single bytes; the learned merges, lowest rank first, join neighbours until no learned
   pair is left. The result is cached per piece, since the same words come back again and again.

``encode_with_offsets`` also says which characters of the text each token came from, as tagging and question
answering need: a token is a run of a piece's bytes, and each byte belongs to one character.

Training learns the merges: count adjacent pairs over the corpus's pieces (weighted by how often each piece
occurs), merge the most frequent pair everywhere, update only the counts that merge changed, and repeat. Ties go
to the pair of smaller token ids, the rule of the ``tokenizers`` library's trainer, so both learn the same merges.

The files are GPT-2's and RoBERTa's: ``vocab.json`` (token -> id) and ``merges.txt`` (``#version: 0.2``, then one
merge per line, highest priority first), readable by ``transformers.RobertaTokenizer`` and ``tokenizers``.
"""

from __future__ import annotations

import heapq
import json
import numbers
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import regex

# GPT-2's pre-tokenisation pattern. The contractions are matched case-sensitively: "don't" splits as
# "don" + "'t", but "DON'T" as "DON" + "'" + "T".
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKENIZE = regex.compile(GPT2_PATTERN)

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
VOCAB_FILE, MERGES_FILE, CONFIG_FILE = "vocab.json", "merges.txt", "tokenizer_config.json"
MERGES_HEADER = "#version: 0.2"
DEFAULT_MAX_LENGTH = 512  # tokens the model sees, <s> and </s> included


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The 256 byte values -> 256 printable characters. Printable Latin-1 bytes stand for themselves; the others
    (control characters, space, ...) are moved to ``chr(256 + n)``, which is why a space shows as 'Ġ' (U+0120)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}
_SPACE = _BYTE_TO_CHAR[ord(" ")]  # 'Ġ'
_LATIN1_TO_CHAR = {b: c for b, c in _BYTE_TO_CHAR.items()}  # str.translate table over latin-1 code points


def to_byte_chars(piece: str) -> str:
    """A piece of text as its UTF-8 bytes, one printable character per byte."""
    return piece.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_CHAR)


def from_byte_chars(chars: str) -> str:
    """Inverse of :func:`to_byte_chars` on a whole sequence (invalid UTF-8 shows as U+FFFD, as in GPT-2)."""
    return bytes(_CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors="replace")


def pretokenize(text: str) -> list[str]:
    return PRETOKENIZE.findall(text)


_SURROGATE = regex.compile("[\ud800-\udfff]")


def _check_text(text, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, not {type(text).__name__}")
    if not text.isascii() and (lone := _SURROGATE.search(text)):  # bytes decoded with errors="surrogateescape"
        raise ValueError(f"{name} holds a lone surrogate {lone.group()!r} at position {lone.start()}: it is not a "
                         "character and has no UTF-8 bytes to encode. Repair the text first, e.g. "
                         "text.encode('utf-8', 'replace').decode('utf-8') (each becomes '?')")
    return text


class ByteLevelBPETokenizer:
    """Byte-level BPE with RoBERTa's special tokens and layouts: ``<s> X </s>`` and ``<s> A </s></s> B </s>``."""

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                 special_tokens: Sequence[str] = SPECIAL_TOKENS, model_max_length: int = DEFAULT_MAX_LENGTH):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.id_to_token_map = {i: t for t, i in self.vocab.items()}
        missing = [t for t in special_tokens if t not in self.vocab]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the vocabulary")
        self.special_tokens = tuple(special_tokens)
        self.special_ids = {self.vocab[t] for t in self.special_tokens}
        self.model_max_length = model_max_length
        # Special tokens written in the text ("Paris is <mask>.") are recognised before BPE, as transformers does;
        # <mask> also takes the spaces before it (transformers' lstrip=True for RoBERTa's mask token).
        self._special_split = regex.compile(
            "(" + "|".join((r"\s*" if t == "<mask>" else "") + regex.escape(t)
                           for t in sorted(self.special_tokens, key=len, reverse=True)) + ")"
        )
        self._cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------------------------------- special tokens

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self.id_to_token_map.get(index)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    bos_token_id = property(lambda self: self.vocab["<s>"])
    pad_token_id = property(lambda self: self.vocab["<pad>"])
    eos_token_id = property(lambda self: self.vocab["</s>"])
    unk_token_id = property(lambda self: self.vocab["<unk>"])
    mask_token_id = property(lambda self: self.vocab["<mask>"])

    def __repr__(self) -> str:
        return f"ByteLevelBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"

    # ------------------------------------------------------------------------------------------- encoding

    def bpe(self, chars: str) -> list[str]:
        """Apply the merges to one pre-token (in byte characters): lowest rank first, every occurrence at once."""
        word = list(chars)
        ranks = self.ranks
        while len(word) > 1:
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        ids = self._cache.get(piece)
        if ids is None:
            unk = self.vocab["<unk>"]
            ids = tuple(self.vocab.get(token, unk) for token in self.bpe(to_byte_chars(piece)))
            if len(self._cache) < 1_000_000:
                self._cache[piece] = ids
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in PRETOKENIZE.findall(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` with special-token strings in it recognised, and no ``<s>``/``</s>`` added."""
        _check_text(text)
        if not any(t in text for t in self.special_tokens):
            return self._encode_plain(text)
        ids: list[int] = []
        for k, part in enumerate(self._special_split.split(text)):
            if k % 2:  # a special token (with the spaces <mask> absorbs)
                ids.append(self.vocab[part.strip()])
            elif part:
                ids.extend(self._encode_plain(part))
        return ids

    def build_inputs(self, ids: list[int], pair: list[int] | None = None) -> list[int]:
        """RoBERTa's layouts: ``<s> A </s>`` and ``<s> A </s></s> B </s>``."""
        bos, eos = self.bos_token_id, self.eos_token_id
        if pair is None:
            return [bos, *ids, eos]
        return [bos, *ids, eos, eos, *pair, eos]

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        ids = self.encode_ordinary(text)
        pair = None if text_pair is None else self.encode_ordinary(_check_text(text_pair, "text_pair"))
        if not add_special_tokens:
            return ids if pair is None else ids + pair
        return self.build_inputs(ids, pair)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` as strings (byte characters, 'Ġ' for a space)."""
        return [self.id_to_token_map[i] for i in self.encode_ordinary(text)]

    # ------------------------------------------------------------------------------------------- offsets

    def encode_with_offsets(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True
                            ) -> tuple[list[int], list[tuple[int, int]], list[int | None]]:
        """``encode``'s ids, each with the characters of the text it came from: what tasks that point back into the
        text need, such as the span of an answer (question answering) or the word a label belongs to (tagging).

        Returns ``(ids, offsets, sequence_ids)``. ``text[start:end]`` is what token ``i`` stands for, with
        ``(start, end) = offsets[i]``; in a pair, the second text's tokens index into ``text_pair``.
        ``sequence_ids[i]`` says which text token ``i`` came from, 0 or 1, and is None for the ``<s>`` and
        ``</s>`` added around them, whose offsets are (0, 0). The offsets are those of transformers' RoBERTa
        tokenizer and of ``tokenizers`` with ``trim_offsets=True`` (equal on every text tested):

        - Spaces at either end of a token are left out: 'Ġworld' spans "world", and a token of spaces alone gets
          an empty span where its spaces end.
        - A token holding only some of a character's UTF-8 bytes (🤗 is four bytes, and a vocabulary without it
          splits it) spans the whole character, so spans always fall between characters; the tokens that share a
          character share it in their spans.
        - A special token written in the text ('<mask>') spans its own characters, without the spaces before it
          that it takes, and belongs to the text it is in.
        """
        ids, offsets = self._ids_and_offsets(_check_text(text))
        if text_pair is None:
            if not add_special_tokens:
                return ids, offsets, [0] * len(ids)
            # build_inputs' layout, <s> A </s>: the added tokens point at no text
            return self.build_inputs(ids), [(0, 0), *offsets, (0, 0)], [None, *[0] * len(ids), None]
        pair_ids, pair_offsets = self._ids_and_offsets(_check_text(text_pair, "text_pair"))
        if not add_special_tokens:
            return ids + pair_ids, offsets + pair_offsets, [0] * len(ids) + [1] * len(pair_ids)
        # <s> A </s></s> B </s>
        return (self.build_inputs(ids, pair_ids),
                [(0, 0), *offsets, (0, 0), (0, 0), *pair_offsets, (0, 0)],
                [None, *[0] * len(ids), None, None, *[1] * len(pair_ids), None])

    def _ids_and_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """``encode_ordinary`` again, keeping track of where in ``text`` each piece starts."""
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        start = 0  # of the current part in text: the parts split() returns are the whole text, in order
        for k, part in enumerate(self._special_split.split(text)):
            if k % 2:  # a special token, with the spaces <mask> absorbs (left out of its span)
                token = part.lstrip()
                ids.append(self.vocab[token])
                offsets.append((start + len(part) - len(token), start + len(part)))
            else:
                for match in PRETOKENIZE.finditer(part):
                    piece_ids, piece_offsets = self._piece_ids_and_offsets(match.group(), start + match.start())
                    ids += piece_ids
                    offsets += piece_offsets
            start += len(part)
        return ids, offsets

    def _piece_ids_and_offsets(self, piece: str, start: int) -> tuple[list[int], list[tuple[int, int]]]:
        """One pre-token's ids and their character spans, ``start`` being where the piece begins in the text.

        A BPE token is a run of the piece's UTF-8 bytes, one byte character per byte; ``char_of_byte`` says which
        character of the piece each byte belongs to, so a token spans from the character of its first byte to the
        character of its last (the whole of both, even when the token holds only some of their bytes)."""
        char_of_byte = [c for c, char in enumerate(piece) for _ in char.encode("utf-8")]
        unk = self.vocab["<unk>"]
        ids, offsets = [], []
        first = 0  # the token's first byte in the piece
        for token in self.bpe(to_byte_chars(piece)):
            last = first + len(token) - 1
            begin, end = start + char_of_byte[first], start + char_of_byte[last] + 1
            # A space is one byte and one character, so each 'Ġ' trimmed moves the span by one character.
            begin = min(begin + len(token) - len(token.lstrip(_SPACE)), end)
            end = max(end - (len(token) - len(token.rstrip(_SPACE))), begin)
            ids.append(self.vocab.get(token, unk))  # as _encode_piece
            offsets.append((begin, end))
            first = last + 1
        return ids, offsets

    # ------------------------------------------------------------------------------------------- decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids back to text. Special tokens are written as themselves; the rest are byte characters, turned back
        into bytes and decoded as UTF-8 run by run."""
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        pieces: list[str] = []
        run: list[str] = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(f"ids must be integers, got {type(i).__name__} ({i!r})")
            token = self.id_to_token_map.get(int(i))
            if token is None:
                raise ValueError(f"id {i} is outside the vocabulary (ids run from 0 to {self.vocab_size - 1})")
            if int(i) not in self.special_ids:
                run.append(token)
            elif not skip_special_tokens:
                pieces += [from_byte_chars("".join(run)), token]
                run = []
        pieces.append(from_byte_chars("".join(run)))
        return "".join(pieces)

    # ------------------------------------------------------------------------------------------- batches

    def __call__(self, texts: str | Sequence[str], text_pairs: str | Sequence[str] | None = None,
                 padding: bool | str = True, truncation: bool = True, max_length: int | None = None,
                 return_tensors: str | None = "pt", pad_to_multiple_of: int | None = None) -> dict:
        """Encode a batch: ``input_ids`` and ``attention_mask``, padded on the right with ``<pad>``.

        ``padding``: True or "longest" pads to the longest sequence, "max_length" to ``max_length``, False not at
        all. ``truncation`` cuts sequences to ``max_length`` (default ``model_max_length``), always keeping the
        special tokens; for pairs it removes tokens from the longer of the two first ("longest_first").
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        pairs = None
        if text_pairs is not None:
            pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
            if len(pairs) != len(batch):
                raise ValueError(f"{len(batch)} texts but {len(pairs)} text pairs: give one pair per text")
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r}: use 'pt' or None")
        if not batch:
            raise ValueError("empty batch: give at least one text (a str, or a list of str)")
        limit = self.model_max_length if max_length is None else max_length
        encoded = []
        for k, text in enumerate(batch):
            a = self.encode_ordinary(_check_text(text, f"texts[{k}]"))
            b = None if pairs is None else self.encode_ordinary(_check_text(pairs[k], f"text_pairs[{k}]"))
            if truncation:
                a, b = self._truncate(a, b, limit)
            encoded.append(self.build_inputs(a, b))
        if padding in (True, "longest"):
            width = max(map(len, encoded))
        elif padding == "max_length":
            width = max(limit, max(map(len, encoded)))
        else:
            width = None
        if width is not None and pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        masks = [[1] * len(ids) for ids in encoded]
        if width is not None:
            masks = [m + [0] * (width - len(m)) for m in masks]
            encoded = [ids + [self.pad_token_id] * (width - len(ids)) for ids in encoded]
        if return_tensors == "pt":
            import torch

            if width is None and len({len(ids) for ids in encoded}) > 1:
                raise ValueError("sequences of different lengths cannot form one tensor: use padding=True")
            return {"input_ids": torch.tensor(encoded, dtype=torch.long),
                    "attention_mask": torch.tensor(masks, dtype=torch.long)}
        if single:
            return {"input_ids": encoded[0], "attention_mask": masks[0]}
        return {"input_ids": encoded, "attention_mask": masks}

    def _truncate(self, a: list[int], b: list[int] | None, limit: int) -> tuple[list[int], list[int] | None]:
        specials = 2 if b is None else 4
        room = limit - specials
        if room < 0:
            raise ValueError(f"max_length={limit} leaves no room next to the {specials} special tokens")
        if b is None:
            return a[:room], None
        a, b = list(a), list(b)
        while len(a) + len(b) > room:  # longest_first: one token at a time from the longer sequence
            (a if len(a) > len(b) else b).pop()
        return a, b

    # ------------------------------------------------------------------------------------------- training

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              special_tokens: Sequence[str] = SPECIAL_TOKENS, show_progress: bool = False) -> ByteLevelBPETokenizer:
        """Learn merges from ``texts`` until the vocabulary holds ``vocab_size`` tokens.

        The vocabulary starts as the special tokens (ids 0, 1, ...) and the 256 byte characters (in code-point
        order); each merge adds one token. Merging stops early when no pair occurs ``min_frequency`` times.
        """
        special_tokens = tuple(special_tokens)
        minimum = 256 + len(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(f"vocab_size={vocab_size!r} is too small: the {len(special_tokens)} special tokens "
                             f"and 256 bytes need at least {minimum}")
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str (a list of documents), not a single str")
        counts: Counter[str] = Counter()
        for k, text in enumerate(texts):
            _check_text(text, f"texts[{k}]")
            counts.update(PRETOKENIZE.findall(text))
        merges = learn_merges(counts, vocab_size, min_frequency, special_tokens, show_progress)
        vocab = {t: i for i, t in enumerate(special_tokens)}
        for token in [*sorted(_BYTE_TO_CHAR.values()), *(a + b for a, b in merges)]:
            vocab.setdefault(token, len(vocab))  # two merges can make the same string: it keeps its first id
        return cls(vocab, merges, special_tokens)

    # ------------------------------------------------------------------------------------------- files

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.json`` and ``merges.txt`` in the GPT-2/RoBERTa format (and a ``tokenizer_config.json``
        for transformers); return the directory. Each file is written whole or not at all."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ordered = dict(sorted(self.vocab.items(), key=lambda kv: kv[1]))
        _atomic_write(directory / VOCAB_FILE, json.dumps(ordered, ensure_ascii=False) + "\n")
        _atomic_write(directory / MERGES_FILE, "\n".join([MERGES_HEADER, *(f"{a} {b}" for a, b in self.merges)]) + "\n")
        # Not needed by this class; tells transformers what roberta-base's own config says: the model's length and
        # that <mask> takes the spaces before it, so that RobertaTokenizer.from_pretrained(directory) agrees with us.
        mask = {"content": "<mask>", "lstrip": True, "rstrip": False, "normalized": False, "single_word": False,
                "special": True, "__type": "AddedToken"}
        config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": self.model_max_length,
                  "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                  "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": mask}
        _atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> ByteLevelBPETokenizer:
        """Load ``vocab.json`` + ``merges.txt`` from a directory, or from a Hub model (``FacebookAI/roberta-base``)."""
        path = Path(name_or_path)
        if path.is_dir():
            files = {name: path / name for name in (VOCAB_FILE, MERGES_FILE)}
            for name, file in files.items():
                if not file.is_file():
                    raise FileNotFoundError(f"{file}: {name} is missing; a tokenizer directory holds {VOCAB_FILE} "
                                            f"and {MERGES_FILE} (write them with .save(directory))")
        else:
            from .hub import download, looks_like_hub_id

            if not looks_like_hub_id(name_or_path):
                raise FileNotFoundError(f"{name_or_path}: not a directory with {VOCAB_FILE} and {MERGES_FILE}, "
                                        "nor a Hub model id such as 'FacebookAI/roberta-base'")
            files = download(str(name_or_path), [VOCAB_FILE, MERGES_FILE],
                             "offline, train one with ByteLevelBPETokenizer.train(...) or load a saved directory")
        vocab = json.loads(files[VOCAB_FILE].read_text(encoding="utf-8"))
        merges = read_merges(files[MERGES_FILE])
        return cls(vocab, merges)

    # ------------------------------------------------------------------------------------------- fast path

    def to_tokenizers(self):
        """The same vocabulary and merges on the Rust ``tokenizers`` backend (identical ids, tested)."""
        from tokenizers import AddedToken, ByteLevelBPETokenizer as Fast

        fast = Fast(self.vocab, self.merges, add_prefix_space=False)
        fast.add_special_tokens([AddedToken(t, lstrip=(t == "<mask>"), normalized=False) for t in self.special_tokens])
        return fast

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True, fast: bool | None = None,
                     fast_above_chars: int = 20_000_000) -> list[list[int]]:
        """Encode many documents. Above ``fast_above_chars`` characters (or with ``fast=True``) the ``tokenizers``
        backend does the work: the same ids (tested), computed in Rust on every core, and without our per-word
        cache, which on a corpus of hundreds of MB would grow to millions of entries. On 2 cores and the 1.5 MB
        python-docs corpus both run at about 5 MB/s (benchmarks/results.md); the backend pays on many cores."""
        texts = list(texts)
        if fast is None:
            fast = sum(len(_check_text(t, "texts[...]")) for t in texts) > fast_above_chars
        if not fast:
            return [self.encode(t, add_special_tokens=add_special_tokens) for t in texts]
        backend = self._fast_backend()
        ids = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
        return [self.build_inputs(x) for x in ids] if add_special_tokens else ids

    def _fast_backend(self):
        if getattr(self, "_fast", None) is None:
            self._fast = self.to_tokenizers()
        return self._fast


def read_merges(path: Path) -> list[tuple[str, str]]:
    """Read ``merges.txt``: an optional ``#version`` line, then ``first second`` per line."""
    merges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path}, line {number}: a merge is two tokens separated by one space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _atomic_write(path: Path, text: str) -> None:
    from .files import atomic_write

    atomic_write(path, text)


def learn_merges(word_counts: dict[str, int], vocab_size: int, min_frequency: int = 2,
                 special_tokens: Sequence[str] = SPECIAL_TOKENS, show_progress: bool = False) -> list[tuple[str, str]]:
    """Learn BPE merges from pre-token counts until the vocabulary has ``vocab_size`` tokens, specials included.

    Every distinct pre-token becomes a list of symbol ids. ``pair_counts`` holds, for each adjacent pair, how often
    it occurs in the corpus; ``where`` holds the words it occurs in. A merge rewrites only those words and adjusts
    only the counts of the pairs it destroyed or created, instead of recounting the corpus. A heap finds the most
    frequent pair; its stale entries are refreshed when popped. Ties go to the smaller (id, id) pair, ids being
    given as the vocabulary grows (specials, then bytes in code-point order, then merges).
    """
    symbols = [*special_tokens, *sorted(_BYTE_TO_CHAR.values())]  # id -> token string
    index = {token: i for i, token in enumerate(symbols)}
    words: list[list[int]] = []
    freqs: list[int] = []
    for piece, count in word_counts.items():
        words.append([index[c] for c in to_byte_chars(piece)])
        freqs.append(count)

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=vocab_size - len(symbols), desc="learning merges", unit="merge")
    merges: list[tuple[str, str]] = []
    while len(symbols) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if -neg != count:  # stale: the pair's count fell since it was pushed
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < max(min_frequency, 1):
            break
        a, b = pair
        merges.append((symbols[a], symbols[b]))
        token = symbols[a] + symbols[b]
        new_id = index.get(token)
        if new_id is None:  # (a, bc) and (ab, c) both make "abc": one token, two merges
            new_id = index[token] = len(symbols)
            symbols.append(token)
        changed: set[tuple[int, int]] = set()
        for w in where.pop(pair):
            word, freq = words[w], freqs[w]
            i, out = 0, []
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            for old in zip(word, word[1:]):
                pair_counts[old] -= freq
            for new in zip(out, out[1:]):
                pair_counts[new] += freq
                where[new].add(w)
                if new_id in new:
                    changed.add(new)
            words[w] = out
        del pair_counts[pair]
        for new in changed:
            heapq.heappush(heap, (-pair_counts[new], new))
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    return merges
