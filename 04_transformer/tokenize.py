"""Encode stdin to token ids (or decode ids back to text) with a run's tokenizer or a tiktoken file.

  echo -n "Hello, world!" | python -m transformer.tokenize --tokenizer runs/default/tokenizer
  echo -n "Hello, world!" | python -m transformer.tokenize --ranks gpt2.tiktoken --pattern gpt2
  printf '"a line"\\n"another"\\n' | python -m transformer.tokenize --tokenizer DIR --jsonl
  echo "[15496, 11, 995, 0]" | python -m transformer.tokenize --ranks gpt2.tiktoken --decode
"""
from __future__ import annotations

import argparse
import json
import sys

from transformer.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError


def _piece(tok: Tokenizer, token_id: int) -> str:
    """A readable form of one token: its text if it is valid UTF-8 on its own, else its bytes."""
    b = tok.id_to_bytes(token_id)
    try:
        return repr(b.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(b)


def _parse_ids(line: str, n: int) -> list[int]:
    line = line.strip()
    try:
        ids = json.loads(line) if line.startswith("[") else [int(x) for x in line.split()]
    except ValueError as e:
        raise TokenizerError(f"line {n}: expected a JSON list of ids or whitespace-separated ids ({e})") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TokenizerError(f"line {n}: expected a list of integers, got {line[:80]!r}")
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m transformer.tokenize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokenizer", metavar="DIR", help="a tokenizer dir (tokenizer.tiktoken + tokenizer.json)")
    src.add_argument("--ranks", metavar="FILE", help="a tiktoken ranks file, e.g. GPT-2's gpt2.tiktoken")
    ap.add_argument("--pattern", default="gpt2", help="split pattern for --ranks: gpt2, gpt4 or a regex (default gpt2)")
    ap.add_argument("--jsonl", action="store_true", help="each input line is a JSON string; print one JSON id list per line")
    ap.add_argument("--decode", action="store_true", help="read ids (JSON list or whitespace-separated, one sequence per line), print text")
    ap.add_argument("--allow-special", action="store_true", help="text spelling a special token encodes as that token")
    args = ap.parse_args(argv)
    sys.stdin.reconfigure(encoding="utf-8", errors="strict")  # not the locale's encoding
    sys.stdout.reconfigure(encoding="utf-8")
    try:
        if args.tokenizer:
            tok = Tokenizer.load(args.tokenizer)
        else:
            tok = Tokenizer.from_tiktoken_file(args.ranks, args.pattern, SPECIAL_TOKENS)
        allowed = "all" if args.allow_special else ()
        if args.decode:
            for n, line in enumerate(sys.stdin, 1):
                if line.strip():
                    print(tok.decode(_parse_ids(line, n)))
        elif args.jsonl:
            for n, line in enumerate(sys.stdin, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)
                except ValueError as e:
                    raise TokenizerError(f"line {n}: not valid JSON ({e})") from None
                if not isinstance(text, str):
                    raise TokenizerError(f"line {n}: expected a JSON string, got {type(text).__name__}")
                print(json.dumps(tok.encode(text, allowed_special=allowed)))
        else:
            ids = tok.encode(sys.stdin.read(), allowed_special=allowed)
            print(json.dumps(ids))
            print(f"# {len(ids)} tokens (vocab_size {tok.vocab_size})")
            for i in ids:
                print(f"{i}\t{_piece(tok, i)}")
    except UnicodeDecodeError as e:
        print(f"error: stdin is not valid UTF-8 ({e})", file=sys.stderr)
        return 2
    except TokenizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
