"""Corpus -> tokenizer + token shards: runs/<run>/tokenizer and runs/<run>/data.

    python -m train.prepare                                  # Shakespeare (default), vocab 4096
    python -m train.prepare --data 'books/*.txt' --vocab-size 8192
    python -m train.prepare --run tiny --data hf:roneneldan/TinyStories --max-docs 200000

The tokenizer is trained on the corpus (its first --tokenizer-bytes) plus the texts of the SFT and
agent-SFT conversations, so that every later stage shares one vocabulary. Each document is encoded
and followed by <|endoftext|>; every 10th document goes to val (a deterministic split by document).
Shards are flat uint16 arrays (uint32 when the vocab needs it) described by data/index.json.
Everything is written to a temp dir inside runs/<run>/ and renamed into place at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from transformer.tokenizer import Tokenizer

from .sources import SourceError, chat_texts, iter_documents

ROOT = Path(__file__).resolve().parent.parent  # the repo: 00b_sft/ and 00c_agent_sft/ live here
INDEX = "index.json"
VAL_EVERY = 10          # document i goes to val when i % VAL_EVERY == VAL_EVERY - 1
SHARD_TOKENS = 1 << 27  # 128M tokens per shard file
CHAT_SHARE = 0.2        # chat texts in the tokenizer's training text: at most this fraction of the corpus sample


def cut(text: str, k: int) -> list[str]:
    """Cut one document into about k parts at blank lines (so a tiny corpus can still be split)."""
    if k <= 1:
        return [text]
    paras = text.split("\n\n")
    size = len(text) / k
    parts, cur, n = [], [], 0
    for p in paras:
        cur.append(p)
        n += len(p) + 2
        if n >= size * (len(parts) + 1) and len(parts) < k - 1:
            parts.append("\n\n".join(cur))
            cur = []
    parts.append("\n\n".join(cur))
    return [p for p in parts if p.strip()]


def select_chat(texts: Iterator[str], corpus_chars: int, share: float = CHAT_SHARE) -> list[str]:
    """Distinct chat texts, thinned evenly to at most `share` x the corpus sample: generated traces repeat
    their templates thousands of times and would otherwise spend the merges on them."""
    distinct = list(dict.fromkeys(texts))
    total, cap = sum(map(len, distinct)), share * corpus_chars
    step = max(1, math.ceil(total / cap)) if cap > 0 else 1
    return distinct[::step]


class ShardWriter:
    """Appends token arrays to <split>_NNN.bin files of at most SHARD_TOKENS tokens."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype):
        self.dir, self.split, self.dtype = directory, split, dtype
        self.shards: list[dict] = []
        self.f = None
        self.documents = self.bytes = 0

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.f is None or self.shards[-1]["tokens"] >= SHARD_TOKENS:
                self.close()
                name = f"{self.split}_{len(self.shards):03d}.bin"
                self.f = open(self.dir / name, "wb")
                self.shards.append({"file": name, "tokens": 0})
            room = SHARD_TOKENS - self.shards[-1]["tokens"]
            self.f.write(ids[:room].astype(self.dtype).tobytes())
            self.shards[-1]["tokens"] += len(ids[:room])
            ids = ids[room:]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)

    def summary(self) -> dict:
        return {"shards": self.shards, "documents": self.documents, "bytes": self.bytes, "tokens": self.tokens}


_tok: Tokenizer | None = None  # per worker process


def _init_worker(tok_dir: str) -> None:
    global _tok
    _tok = Tokenizer.load(tok_dir)


def _encode(text: str) -> tuple[np.ndarray, int]:
    ids = _tok.encode_ordinary(text)
    ids.append(_tok.special_tokens["<|endoftext|>"])
    return np.asarray(ids, dtype=np.uint32), len(text.encode("utf-8"))


def prepare(run: str = "default", data: list[str] | None = None, vocab_size: int = 4096,
            pattern: str = "gpt4-digits", block_size: int = 256, tokenizer_bytes: int = 50_000_000,
            max_docs: int | None = None, workers: int | None = None, runs_dir: str | Path = "runs",
            verbose: bool = True) -> dict:
    """Build runs/<run>/{tokenizer,data}; returns the data index (with stats). Raises SourceError."""
    t0 = time.time()
    log = print if verbose else (lambda *a, **k: None)
    out = Path(runs_dir) / run
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare.tmp", dir=out))
    try:
        def documents() -> Iterator[str]:
            return (text for _, text in islice(iter_documents(data), max_docs))

        # pass 1: count documents, train the tokenizer on a prefix of the corpus + the chat data
        n_docs, sample, sample_bytes = 0, [], 0
        for text in documents():
            n_docs += 1
            if sample_bytes < tokenizer_bytes:
                sample.append(text)
                sample_bytes += len(text)
        if n_docs == 0:
            raise SourceError(f"no documents in {data or 'the default corpus'}")
        # the repo's chat data: next to this package, or in the working directory (a copied package)
        chat = select_chat(chat_texts(ROOT if (ROOT / "00b_sft").is_dir() else Path.cwd()), sample_bytes)
        log(f"training a {vocab_size}-token tokenizer on {sample_bytes:,} corpus chars "
            f"+ {len(chat)} chat/kb texts ...")
        tok = Tokenizer.train(sample + chat, vocab_size, pattern=pattern)
        del sample
        tok.save(str(tmp / "tokenizer"))
        log(f"  tokenizer: {tok.vocab_size} tokens ({time.time() - t0:.1f}s)")

        # pass 2: encode documents (in parallel), every VAL_EVERY-th one to val
        (tmp / "data").mkdir()
        dtype = np.dtype(np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32)
        writers = {s: ShardWriter(tmp / "data", s, dtype) for s in ("train", "val")}
        k = math.ceil(VAL_EVERY / n_docs) if n_docs < VAL_EVERY else 1
        if k > 1:
            log(f"  only {n_docs} document(s): cutting each into ~{k} parts at blank lines for the val split")
        parts = (p for text in documents() for p in cut(text, k))
        workers = workers or os.cpu_count() or 1
        pool = mp.get_context("fork").Pool(workers, _init_worker, (str(tmp / "tokenizer"),)) \
            if workers > 1 and sample_bytes > 2_000_000 else None
        if pool is None:
            _init_worker(str(tmp / "tokenizer"))
        try:
            encoded = pool.imap(_encode, parts, chunksize=16) if pool else map(_encode, parts)
            for i, (ids, nbytes) in enumerate(encoded):
                w = writers["val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"]
                w.write(ids)
                w.documents += 1
                w.bytes += nbytes
        finally:
            if pool:
                pool.close()
                pool.join()
            for w in writers.values():
                w.close()
        for split, w in writers.items():
            if w.tokens <= block_size + 1:
                raise SourceError(f"corpus too small: the {split} split has {w.tokens} tokens, fewer than one "
                                  f"training window of {block_size + 1} (block_size {block_size} + 1); add text "
                                  "or pass a smaller --block-size")

        index = {"format": "llm-stack-shards/1", "dtype": dtype.name, "vocab_size": tok.vocab_size,
                 "eot": tok.special_tokens["<|endoftext|>"], "sources": data or ["shakespeare"],
                 "pattern": pattern, "splits": {s: w.summary() for s, w in writers.items()}}
        (tmp / "data" / INDEX).write_text(json.dumps(index, indent=2))
        for name in ("data", "tokenizer"):  # swap in the finished directories
            shutil.rmtree(out / name, ignore_errors=True)
            (tmp / name).rename(out / name)
        if (out / "base").exists():
            log(f"  note: {out / 'base'} was trained with the previous tokenizer; retrain it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for split, s in index["splits"].items():
        log(f"{split:>5}: {s['documents']:>8,} documents {s['bytes']:>13,} bytes {s['tokens']:>12,} tokens "
            f"{s['bytes'] / s['tokens']:.2f} bytes/token")
    total_b = sum(s["bytes"] for s in index["splits"].values())
    total_t = sum(s["tokens"] for s in index["splits"].values())
    log(f"total: {n_docs:,} source documents, {total_b:,} bytes, {total_t:,} tokens, "
        f"{total_b / total_t:.2f} bytes/token -> {out}/data ({time.time() - t0:.1f}s)")
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="run name: writes runs/<run>/{data,tokenizer}")
    ap.add_argument("--data", nargs="+", metavar="SRC",
                    help="files/globs (.txt .jsonl .parquet), hf:NAME[:[CONFIG/]SPLIT], or 'shakespeare' (default)")
    ap.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocab incl. 8 special tokens")
    ap.add_argument("--pattern", default="gpt4-digits",
                    help="split regex: gpt4-digits (default: GPT-4's with one digit per chunk), gpt4, gpt2 or a regex")
    ap.add_argument("--block-size", type=int, default=256, help="each split must hold one window of this many+1 tokens")
    ap.add_argument("--tokenizer-bytes", type=int, default=50_000_000, help="corpus chars used to train the tokenizer")
    ap.add_argument("--max-docs", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--workers", type=int, default=None, help="encoding processes (default: all cores)")
    ap.add_argument("--runs-dir", default="runs", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        prepare(args.run, args.data, args.vocab_size, args.pattern, args.block_size, args.tokenizer_bytes,
                args.max_docs, args.workers, args.runs_dir)
    except (SourceError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
