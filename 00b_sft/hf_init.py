"""Path B: start SFT from a Hugging Face GPT-2 directory instead of our own pretrained base.

The weights load through `transformer.hf.load_hf_gpt2`. The tokenizer comes with the weights:
- our own format (tokenizer.tiktoken + tokenizer.json with "format": "llm-stack-tokenizer/1"), or
- GPT-2's vocab.json + merges.txt, converted to tiktoken ranks (token bytes -> id) through GPT-2's
  byte <-> unicode table. Ranks double as merge priorities in tiktoken, so the ids of merged tokens
  must increase in merges.txt order (true for GPT-2); anything else is refused with a clear error.
Our special tokens are then ADDED where missing (an existing `<|endoftext|>` keeps its id) and the
embedding grows to hold them; new rows start at the mean embedding, so before any training a new
token looks like an "average" token instead of a random direction of unusual norm.
"""
from __future__ import annotations

import json
from pathlib import Path

import regex
import torch

from transformer import GPT, GPTConfig
from transformer.hf import load_hf_gpt2
from transformer.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError

_SPECIAL_RE = regex.compile(r"<\|[^|<>]+\|>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable unicode characters (vocab.json's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_from_gpt2_files(directory: Path) -> Tokenizer:
    """vocab.json + merges.txt (GPT-2 byte-level BPE) -> a Tokenizer with GPT-2's split pattern."""
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    decode = {c: b for b, c in bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    specials: dict[str, int] = {}
    for text, i in vocab.items():
        if _SPECIAL_RE.fullmatch(text):
            specials[text] = i
        elif all(c in decode for c in text):
            ranks[bytes(decode[c] for c in text)] = i
        else:
            raise TokenizerError(f"{directory / 'vocab.json'}: token {text!r} is not in GPT-2's byte alphabet")
    last = -1
    for n, line in enumerate((directory / "merges.txt").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#version"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerError(f"{directory / 'merges.txt'}:{n}: expected two tokens, got {line!r}")
        merged = vocab.get(parts[0] + parts[1])
        if merged is None:
            raise TokenizerError(f"{directory / 'merges.txt'}:{n}: merge result {parts[0] + parts[1]!r} not in vocab.json")
        if merged <= last:
            raise TokenizerError(f"{directory}: merge ids do not increase in merges.txt order (line {n}); "
                                 "only GPT-2-style vocabularies (id = merge rank) can become tiktoken ranks")
        last = merged
    return Tokenizer(ranks, "gpt2", specials)


def load_hf_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer stored with HF weights, with all of our SPECIAL_TOKENS present (added if needed)."""
    d = Path(directory)
    ours = d / "tokenizer.json"
    if (d / "tokenizer.tiktoken").is_file() and ours.is_file() and \
            json.loads(ours.read_text(encoding="utf-8")).get("format", "").startswith("llm-stack-tokenizer"):
        tok = Tokenizer.load(str(d))
    elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        tok = tokenizer_from_gpt2_files(d)
    else:
        raise TokenizerError(f"{d}: no tokenizer found: expected our tokenizer.tiktoken + tokenizer.json, "
                             "or GPT-2's vocab.json + merges.txt")
    specials = dict(tok.special_tokens)
    nxt = tok.vocab_size
    for name in SPECIAL_TOKENS:
        if name not in specials:
            specials[name], nxt = nxt, nxt + 1
    return Tokenizer(tok.mergeable_ranks, tok.pattern, specials)


def resize_vocab(model: GPT, vocab_size: int) -> GPT:
    """A copy of `model` whose (tied) embedding has vocab_size rows; new rows = the mean embedding."""
    old = model.config.vocab_size
    if vocab_size <= old:
        return model
    cfg = GPTConfig.from_dict({**model.config.to_dict(), "vocab_size": vocab_size})
    state = model.state_dict()
    wte = state["transformer.wte.weight"]
    grown = torch.cat([wte, wte.mean(dim=0, keepdim=True).expand(vocab_size - old, -1)])
    state["transformer.wte.weight"] = state["lm_head.weight"] = grown
    new = GPT(cfg)
    new.load_state_dict(state)
    return new


def init_from_hf(directory: str | Path) -> tuple[GPT, Tokenizer]:
    """HF GPT-2 dir -> (model sized for our special tokens, tokenizer)."""
    tok = load_hf_tokenizer(directory)
    model = load_hf_gpt2(directory)
    return resize_vocab(model, tok.vocab_size), tok
