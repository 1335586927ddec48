"""Sample text from a checkpoint, streamed to the terminal as it is generated.

    python -m train.sample --checkpoint runs/default/base --prompt "ROMEO:" --max-tokens 200

Generation runs model.generate in chunks of --chunk tokens, printing each chunk as soon as it is
ready (StreamDecoder holds back bytes of a character split across tokens). Chunking also lets the
text grow past the model's block_size: each chunk sees the last block_size - chunk tokens.
Stops at <|endoftext|> or after --max-tokens.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from transformer.checkpoint import CheckpointError, load_checkpoint
from transformer.tokenizer import StreamDecoder, Tokenizer, TokenizerError


def load_tokenizer(ckpt: Path, meta: dict) -> Tokenizer:
    """The tokenizer named in meta.json, else the run's (checkpoint dir's sibling tokenizer/)."""
    for d in (meta.get("tokenizer"), ckpt.parent / "tokenizer"):
        if d and Path(d).is_dir():
            return Tokenizer.load(str(d))
    raise TokenizerError(f"no tokenizer for {ckpt}: {meta.get('tokenizer')} and {ckpt.parent / 'tokenizer'} are missing")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/default/base", help="checkpoint dir (default runs/default/base)")
    ap.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    ap.add_argument("--top-k", type=int, default=50, help="0 = no top-k")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--chunk", type=int, default=16, help="tokens generated per streamed chunk")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    sys.stdout.reconfigure(encoding="utf-8")
    try:
        if args.max_tokens < 1 or args.chunk < 1 or args.temperature < 0:
            raise ValueError("--max-tokens and --chunk must be >= 1 and --temperature >= 0")
        ckpt = Path(args.checkpoint)
        model, meta = load_checkpoint(ckpt, device=device)
        tok = load_tokenizer(ckpt, meta)
    except (CheckpointError, TokenizerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    eot = tok.special_tokens["<|endoftext|>"]
    ids = [eot] + tok.encode(args.prompt)  # a prompt starts a document, like the training data
    block = model.config.block_size
    chunk = min(args.chunk, block - 1)
    g = torch.Generator(device=device).manual_seed(args.seed)
    dec = StreamDecoder(tok)
    print(args.prompt, end="", flush=True)
    produced = 0
    while produced < args.max_tokens:
        n = min(chunk, args.max_tokens - produced)
        context = torch.tensor([ids[-(block - n):]], device=device)
        new = model.generate(context, n, temperature=args.temperature, top_k=args.top_k or None,
                             generator=g)[0, context.size(1):].tolist()
        for i in new:
            if i == eot:
                print(dec.flush(), flush=True)
                return 0
            print(dec.push(i), end="", flush=True)
        ids += new
        produced += n
    print(dec.flush(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
