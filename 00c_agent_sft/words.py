"""Build words.txt: the English words that invented names are made from (agent_sft.invented).

    python -m agent_sft.words      # reads the Shakespeare corpus (train.sources), writes 00c_agent_sft/words.txt

Why: a small model copies a name token by token, and it copies a token well only if training made it
copy that token before. A held-out name fails at its rarest piece: "insulin" at " ins", "Castle
Dunmore" at "more", pieces no training lookup had copied (half of the vocabulary's word pieces were
never copied). The run's tokenizer learns its pieces mostly from the pretraining corpus, so this
script trains a tokenizer on the corpus as `train.prepare` does, and keeps, for every word piece of
its vocabulary, the most frequent corpus words that spell it after a space, lowercase and capitalised
(a name's case picks its pieces: " pride" and " Pride" are two tokens). Names built from these words
make training copy many more of the pieces (00c_agent_sft/README.md has the counts). The list is
committed, so generating the traces needs neither the corpus nor a download.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

HERE = Path(__file__).resolve().parent
WORDS_FILE = HERE / "words.txt"


def word_counts(texts: Iterable[str]) -> Counter:
    """Lowercase ASCII words (letters only) of 3 to 14 letters -> occurrences."""
    counts = Counter(w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text))
    return Counter({w: n for w, n in counts.items() if 3 <= len(w) <= 14})


def covering_words(counts: Counter, encode, vocab: Iterable[int], per_piece: int = 3, min_count: int = 2) -> list[str]:
    """The most frequent words that together spell every word piece of `vocab` `per_piece` times after a
    space, sorted: lowercase ("pride" for " pride") or capitalised ("Pride" for " Pride"), since a
    name's case picks its pieces. `encode`: text -> token ids."""
    vocab, keep = list(vocab), []  # read once per case
    for case in (str.lower, str.capitalize):
        need = Counter({t: per_piece for t in vocab})
        for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if n < min_count:
                break
            pieces = set(encode(" " + case(w)))
            if any(need[t] > 0 for t in pieces):
                keep.append(case(w))
                need.subtract({t: 1 for t in pieces if need[t] > 0})
    return sorted(keep)


def load_words(path: Path = WORDS_FILE) -> list[str]:
    return path.read_text(encoding="utf-8").split()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent_sft.words", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", default=["shakespeare"], help="train.sources specs (default: shakespeare)")
    ap.add_argument("--vocab-size", type=int, default=4096, help="the reference tokenizer's size (train.prepare's)")
    ap.add_argument("--per-piece", type=int, default=3, help="words to keep per word piece")
    ap.add_argument("--out", default=str(WORDS_FILE))
    args = ap.parse_args(argv)
    from train.sources import iter_documents
    from transformer.tokenizer import Tokenizer
    texts = [text for _, text in iter_documents(args.data)]
    tok = Tokenizer.train(texts, args.vocab_size, pattern="gpt4-digits")
    pieces = [i for i in tok.mergeable_ranks.values() if re.fullmatch(rb" ?[A-Za-z]+", tok.id_to_bytes(i))]
    words = covering_words(word_counts(texts), tok.encode, pieces, args.per_piece)
    Path(args.out).write_text("\n".join(words) + "\n", encoding="utf-8")
    print(f"{len(words)} words cover {len(pieces)} word pieces of a {args.vocab_size}-token tokenizer -> {args.out}")


if __name__ == "__main__":
    main()
