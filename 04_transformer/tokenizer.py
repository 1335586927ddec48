"""Byte-level BPE tokenizer, tiktoken-compatible (minbpe-style: small and readable).

The model of a tokenizer here is tiktoken's: a regex splits text into chunks ("pre-tokens"), and a
table `ranks: bytes -> int` (the token id) drives merging inside each chunk. Encoding a chunk starts
from its single bytes and repeatedly merges the adjacent pair whose concatenation has the lowest
rank, so `encode` equals `tiktoken.Encoding(...).encode(text, disallowed_special=())` for any ranks.
The 256 single bytes have ranks 0..255 (= byte value) in tokenizers we train; special tokens come
after the merges. Training counts every unique chunk once, weighted by its frequency, and updates
pair counts incrementally (only chunks that contain the merged pair are touched).
"""
from __future__ import annotations

import base64
import codecs
import heapq
import json
import operator
import os
import tempfile
from collections import Counter, defaultdict
from itertools import chain, repeat
from typing import Iterable

import regex

# tiktoken's r50k/gpt2 and cl100k/gpt4 split patterns, copied verbatim from tiktoken_ext.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
# GPT-4's split with every digit its own chunk (as Llama does): a number is then a string of ten
# well-trained tokens, so a small model copies it digit by digit instead of having to copy any of
# 1,110 rarer 1-3 digit tokens. Our runs use it (train.prepare's default); measured in 00c_agent_sft.
GPT4_DIGITS_PATTERN = GPT4_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "gpt4-digits": GPT4_DIGITS_PATTERN}
# The same splits without possessive quantifiers, ~15% faster in `regex`. Equivalent because no
# branch can succeed by backtracking into them: X?\p{L}+ with X a non-letter, runs followed by
# nothing, and \s+$ (only the whole run can reach the end). The tests compare against tiktoken.
_FAST_EQUIVALENT = {
    GPT2_PATTERN: r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+$|\s+(?!\S)|\s""",
    GPT4_PATTERN: r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                  r"""|\s+$|\s*[\r\n]|\s+(?!\S)|\s""",
}
_FAST_EQUIVALENT[GPT4_DIGITS_PATTERN] = _FAST_EQUIVALENT[GPT4_PATTERN].replace(r"\p{N}{1,3}", r"\p{N}")
SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>",
                  "<|thought|>", "<|action|>", "<|observation|>", "<|answer|>"]
RANKS_FILE, CONFIG_FILE = "tokenizer.tiktoken", "tokenizer.json"
_NO_RANK = 1 << 62          # "this pair cannot merge"; larger than any real rank
_LONG_PIECE = 128           # chunks longer than this (bytes) merge with a heap, not O(n^2) scans
_CACHE_MAX = 1 << 18        # chunk cache entries before it is cleared (bounded memory in a server)
_BYTES = [bytes([b]) for b in range(256)]


class TokenizerError(ValueError):
    """A missing, corrupt or inconsistent tokenizer file, or bad arguments."""


def resolve_pattern(pattern: str) -> tuple[str, regex.Pattern]:
    """'gpt2' / 'gpt4' / 'gpt4-digits' / a regex -> (the pattern as tiktoken gets it, a compiled fast equivalent)."""
    pat = PATTERNS.get(pattern, pattern)
    try:
        return pat, regex.compile(_FAST_EQUIVALENT.get(pat, pat))
    except (regex.error, TypeError) as e:
        raise TokenizerError(f"bad split pattern {pattern!r}: {e}") from None


def _split(pat: regex.Pattern, text: str) -> list[str]:
    """All whole matches, as tiktoken takes them (findall would return a custom regex's groups)."""
    return [m.group() for m in pat.finditer(text)] if pat.groups else pat.findall(text)


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` (left to right) with new_id."""
    out, i, n, (a, b) = [], 0, len(ids), pair
    while i < n:
        pair_here = ids[i] == a and i + 1 < n and ids[i + 1] == b
        out.append(new_id if pair_here else ids[i])
        i += 2 if pair_here else 1
    return out


class _ChunkCache(dict):
    """chunk (str) -> token ids; a miss runs BPE. `dict.__missing__` keeps hits at C speed.
    Values are tuples: tuples of ints drop out of the garbage collector's tracking, lists don't."""

    def __init__(self, ranks: dict[bytes, int], bpe):
        super().__init__()
        self.ranks, self.bpe = ranks, bpe

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        piece = chunk.encode("utf-8")  # lone surrogates raise; encode_ordinary handles it
        rank = self.ranks.get(piece)   # fast path: the whole chunk is one token
        ids = (rank,) if rank is not None else tuple(self.bpe(piece))
        if len(self) >= _CACHE_MAX:
            self.clear()
        self[chunk] = ids
        return ids


class Tokenizer:
    def __init__(self, ranks: dict[bytes, int], pattern: str = "gpt4",
                 special_tokens: dict[str, int] | list[str] | None = None):
        """ranks: token bytes -> id (all 256 single bytes required). special_tokens: name -> id, or a
        list of names given ids after the largest rank; None = SPECIAL_TOKENS."""
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise TokenizerError(f"ranks lack {len(missing)} single-byte tokens (e.g. byte {missing[0]})")
        if len(set(ranks.values())) != len(ranks):
            raise TokenizerError("ranks are not unique: two tokens share an id")
        self.pattern, self._pat = resolve_pattern(pattern)
        self._ranks = dict(ranks)
        specials = SPECIAL_TOKENS if special_tokens is None else special_tokens
        if not isinstance(specials, dict):
            first = max(ranks.values()) + 1
            specials = {name: first + i for i, name in enumerate(specials)}
        self.special_tokens: dict[str, int] = dict(specials)
        self._id_to_bytes: dict[int, bytes] = {i: b for b, i in self._ranks.items()}
        for name, i in self.special_tokens.items():
            if i in self._id_to_bytes:
                raise TokenizerError(f"special token {name!r} id {i} collides with another token")
            self._id_to_bytes[i] = name.encode("utf-8")
        self.vocab_size: int = max(self._id_to_bytes) + 1
        self._cache = _ChunkCache(self._ranks, self._bpe)
        self._special_res: dict[frozenset, regex.Pattern] = {}

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int, pattern: str = "gpt4",
              special_tokens: list[str] | None = None, verbose: bool = False) -> "Tokenizer":
        """Learn merges until the vocab (256 bytes + merges + specials) has vocab_size tokens, or
        no adjacent pair is left (a tiny text gives a smaller vocab). Ties: the smallest pair."""
        specials = list(SPECIAL_TOKENS if special_tokens is None else special_tokens)
        n_tokens = vocab_size - len(specials)
        if n_tokens < 256:
            raise TokenizerError(f"vocab_size {vocab_size} < 256 bytes + {len(specials)} specials")
        pat = resolve_pattern(pattern)[1]
        # Special tokens in the text (e.g. rendered chats) are cut out, as encode(allowed_special=
        # "all") would cut them, so no vocab is spent on merges like "<|" or "|>".
        cut = regex.compile("|".join(map(regex.escape, sorted(specials, key=len, reverse=True))) or "(?!)")
        counts: Counter[str] = Counter()
        for t in ([text] if isinstance(text, str) else text):
            for part in cut.split(t):
                counts.update(_split(pat, part))
        words = [list(w.encode("utf-8", "surrogatepass")) for w in counts]  # unique chunks
        freqs = list(counts.values())
        stats: dict[tuple[int, int], int] = defaultdict(int)          # pair -> weighted count
        where: dict[tuple[int, int], set[int]] = defaultdict(set)     # pair -> chunks holding it
        for wi, w in enumerate(words):
            for p in zip(w, w[1:]):
                stats[p] += freqs[wi]
                where[p].add(wi)
        heap = [(-c, p) for p, c in stats.items()]   # max-count first; ties -> smallest pair
        heapq.heapify(heap)
        vocab = [bytes([i]) for i in range(256)]      # id -> bytes
        ranks = {b: i for i, b in enumerate(vocab)}
        while len(vocab) < n_tokens and heap:
            neg, pair = heapq.heappop(heap)
            if stats.get(pair, 0) != -neg:           # stale entry: the count changed since push
                continue
            merged = vocab[pair[0]] + vocab[pair[1]]
            new_id = ranks.get(merged)               # same bytes reached by another split: reuse id
            if new_id is None:
                new_id = ranks[merged] = len(vocab)
                vocab.append(merged)
                if verbose and new_id % 500 == 0:
                    print(f"merge {new_id - 255}/{n_tokens - 256}: {merged!r} x{-neg}")
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for wi in where.pop(pair):
                w, f = words[wi], freqs[wi]
                nw = _merge(w, pair, new_id)
                if len(nw) == len(w):
                    continue
                for p in zip(w, w[1:]):
                    delta[p] -= f
                for p in zip(nw, nw[1:]):
                    delta[p] += f
                    where[p].add(wi)
                words[wi] = nw
            for p, d in delta.items():
                if d:
                    c = stats[p] + d
                    if c > 0:
                        stats[p] = c
                        heapq.heappush(heap, (-c, p))
                    else:
                        del stats[p]
        return cls(ranks, pattern, {s: len(vocab) + i for i, s in enumerate(specials)})

    # ---------------------------------------------------------------- encoding
    def _bpe(self, piece: bytes) -> list[int]:
        """tiktoken's byte_pair_merge: merge the lowest-rank adjacent pair (leftmost on ties)."""
        ranks = self._ranks
        rank = ranks.get(piece)
        if rank is not None:                      # fast path: the whole chunk is one token
            return [rank]
        if len(piece) > _LONG_PIECE:
            return self._bpe_long(piece)
        get = ranks.get
        parts = list(map(_BYTES.__getitem__, piece))
        pair_ranks = list(map(get, map(operator.add, parts, parts[1:]), repeat(_NO_RANK)))
        while pair_ranks:
            best = min(pair_ranks)
            if best == _NO_RANK:
                break
            i = pair_ranks.index(best)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
            del pair_ranks[i]
            if i < len(pair_ranks):
                pair_ranks[i] = get(parts[i] + parts[i + 1], _NO_RANK)
            if i > 0:
                pair_ranks[i - 1] = get(parts[i - 1] + parts[i], _NO_RANK)
        return list(map(ranks.__getitem__, parts))

    def _bpe_long(self, piece: bytes) -> list[int]:
        """The same merges in O(n log n) for long chunks (a 100 kB run of one letter would take
        O(n^2) above): a heap of (rank, start) gives the lowest rank, leftmost on ties; parts are
        a linked list of start offsets; stale heap entries are skipped."""
        get, n = self._ranks.get, len(piece)
        nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap = [(r, i) for i in range(n - 1) if (r := get(piece[i:i + 2])) is not None]
        heapq.heapify(heap)
        while heap:
            r, i = heapq.heappop(heap)
            if not alive[i] or nxt[i] == n or get(piece[i:nxt[nxt[i]]]) != r:
                continue
            j = nxt[i]
            alive[j], k = False, nxt[j]     # part i absorbs part j and now ends at k
            nxt[i] = k
            if k < n:
                prv[k] = i
                if (rr := get(piece[i:nxt[k]])) is not None:
                    heapq.heappush(heap, (rr, i))
            if (p := prv[i]) >= 0 and (rr := get(piece[p:k])) is not None:
                heapq.heappush(heap, (rr, p))
        out, i = [], 0
        while i < n:
            out.append(self._ranks[piece[i:nxt[i]]])
            i = nxt[i]
        return out

    def split(self, text: str) -> list[str]:
        """The regex pre-tokenization: the chunks BPE runs on."""
        return _split(self._pat, text)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no special-token handling (specials spelled in text are plain text)."""
        chunks = self.split(text)
        try:
            return list(chain.from_iterable(map(self._cache.__getitem__, chunks)))
        except UnicodeEncodeError:  # lone surrogates: replace them like tiktoken does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self.encode_ordinary(text)

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """allowed_special: () (default: specials are plain text), "all", or a set of names."""
        if allowed_special == "all":
            allowed = frozenset(self.special_tokens)
        elif isinstance(allowed_special, str):
            raise TokenizerError(f"allowed_special must be 'all' or a set of names, not {allowed_special!r}")
        else:
            allowed = frozenset(allowed_special)
            unknown = allowed - self.special_tokens.keys()
            if unknown:
                raise TokenizerError(f"unknown special tokens: {sorted(unknown)}")
        if not allowed:
            return self.encode_ordinary(text)
        special_re = self._special_res.get(allowed)
        if special_re is None:  # longest first so a special that prefixes another can't shadow it
            alts = "|".join(regex.escape(s) for s in sorted(allowed, key=lambda s: (-len(s), s)))
            special_re = self._special_res[allowed] = regex.compile(f"({alts})")
        ids: list[int] = []
        for k, part in enumerate(special_re.split(text)):  # text, special, text, special, ...
            if k % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_special(self, name: str) -> int:
        """The id of a special token, e.g. tok.encode_special("<|end|>")."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise TokenizerError(f"unknown special token {name!r}; have {list(self.special_tokens)}") from None

    # ---------------------------------------------------------------- decoding
    def id_to_bytes(self, token_id: int) -> bytes:
        try:  # operator.index: ints, numpy ints and 0-d integer tensors; not floats
            return self._id_to_bytes[operator.index(token_id)]
        except (KeyError, TypeError, ValueError):
            raise TokenizerError(f"invalid token id {token_id!r} (vocab_size {self.vocab_size})") from None

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = ids if isinstance(ids, list) else list(ids)
        try:
            return b"".join(map(self._id_to_bytes.__getitem__, ids))
        except (KeyError, TypeError):  # slow path: tensor elements, or report the first bad id
            return b"".join(map(self.id_to_bytes, ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Invalid UTF-8 (e.g. a sequence cut mid-character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """A copy of the ranks, e.g. for tiktoken.Encoding(mergeable_ranks=...)."""
        return dict(self._ranks)

    # ---------------------------------------------------------------- files
    def save(self, directory: str) -> None:
        """Write tokenizer.tiktoken (tiktoken's ranks format) and tokenizer.json, each atomically."""
        os.makedirs(directory, exist_ok=True)
        lines = (f"{base64.b64encode(b).decode()} {i}\n" for b, i in sorted(self._ranks.items(), key=lambda x: x[1]))
        config = {"format": "llm-stack-tokenizer/1", "pattern": self.pattern,
                  "special_tokens": self.special_tokens, "vocab_size": self.vocab_size}
        for name, content in ((RANKS_FILE, "".join(lines)), (CONFIG_FILE, json.dumps(config, indent=2) + "\n")):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a tokenizer is meant to be shared
            os.replace(tmp, os.path.join(directory, name))

    @classmethod
    def load(cls, directory: str) -> "Tokenizer":
        path = os.path.join(directory, CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            pattern, specials = config["pattern"], config["special_tokens"]
            if not isinstance(pattern, str) or not isinstance(specials, dict):
                raise TypeError("pattern must be a string and special_tokens an object")
        except FileNotFoundError:
            raise TokenizerError(f"no tokenizer at {directory!r}: {path} is missing") from None
        except (ValueError, KeyError, TypeError) as e:
            raise TokenizerError(f"corrupt tokenizer config {path}: {e!r}") from None
        return cls.from_tiktoken_file(os.path.join(directory, RANKS_FILE), pattern, specials)

    @classmethod
    def from_tiktoken_file(cls, path: str, pattern: str = "gpt2",
                           special_tokens: dict[str, int] | list[str] | None = None) -> "Tokenizer":
        """Load any tiktoken ranks file ("base64(token) rank" per line)."""
        ranks: dict[bytes, int] = {}
        try:
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        token, rank = line.split()
                        ranks[base64.b64decode(token, validate=True)] = int(rank)
                    except ValueError:
                        raise TokenizerError(f"corrupt ranks file {path}, line {n}: {line[:80]!r}") from None
        except OSError as e:
            raise TokenizerError(f"cannot read ranks file {path}: {e.strerror}") from None
        if not ranks:
            raise TokenizerError(f"ranks file {path} is empty")
        return cls(ranks, pattern, special_tokens)


class StreamDecoder:
    """Incremental decoding for streaming: push(id) returns only complete UTF-8 characters; an
    incomplete trailing sequence waits for the next token. Truly invalid bytes become U+FFFD."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self.tok.id_to_bytes(token_id))

    def flush(self) -> str:
        """End of stream: whatever is still buffered (an incomplete character -> U+FFFD)."""
        out = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return out
