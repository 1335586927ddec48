"""Byte-level BPE tokenizer: bit-for-bit equality with tiktoken, round trips, specials, files, CLI."""
import base64
import io
import json
import os
import subprocess
import sys

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenizer_assets import gpt2_ranks_path
from transformer.tokenizer import (GPT4_PATTERN, SPECIAL_TOKENS, StreamDecoder,
                                   Tokenizer, TokenizerError)

CORPUS = [
    "Hello, world! The quick brown fox jumps over the lazy dog. It's 2024; we've 3.14159 reasons.",
    "DON'T I'm you'RE We'll they'VE she'd HE'S it's 'quoted' ''double'' rock'n'roll",
    "def f(x):\n\treturn x ** 2  # square\n\n\nclass A:\n    pass\r\n    if a != b and c <= d: print(f'{a!r}')\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * 0x1F; }  /* C */ // done",
    "机器学习是人工智能的一个分支。我们今天去北京吃烤鸭吧！",
    "日本語のテキスト、カタカナとひらがな。東京タワーは３３３メートル。",
    "مرحبا بالعالم! هذه جملة عربية.",
    "नमस्ते दुनिया, यह हिंदी का वाक्य है।",
    "Emoji: 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 heart ❤️ woman technologist 👩🏿‍💻",
    "Combining: e\u0301 n\u0303 a\u0308\u0323 Zalgo: Z\u0351\u0310a\u0344l\u0346g\u0357o",
    "spaces:    four   three  two one\t\ttabs\t \n\n\nnewlines \r\n\r\n end   ",
    "digits 1 12 123 1234 12345 123456789 3.14 1,000,000 ٣٤٥ ４５６",
    "NUL\x00 and controls \x01\x02\x07\x1b[31mred\x1b[0m \x7f \u200b\u200d\ufeff",
    "specials as text: <|endoftext|> <|user|>hi<|end|><|assistant|><|answer|>ok",
    "Ünïcödé Straße façade naïve résumé Ελληνικά русский текст 한국어 텍스트",
    "",
    " ",
    "\n",
    "a",
    "   leading and trailing   \n  ",
]
TEXT = "\n".join(CORPUS)
with open(__file__, encoding="utf-8") as _f:
    TRAIN_TEXTS = [TEXT * 3, _f.read()]


@pytest.fixture(scope="session")
def gpt2_tok() -> Tokenizer:
    return Tokenizer.from_tiktoken_file(gpt2_ranks_path(), "gpt2")


@pytest.fixture(scope="session")
def trained_tok() -> Tokenizer:
    return Tokenizer.train(TRAIN_TEXTS, vocab_size=700, pattern="gpt4")


@pytest.fixture(scope="session")
def digits_tok() -> Tokenizer:
    """The split our runs use (train.prepare's default): GPT-4's, one digit per chunk."""
    return Tokenizer.train(TRAIN_TEXTS, vocab_size=700, pattern="gpt4-digits")


def tiktoken_of(tok: Tokenizer) -> tiktoken.Encoding:
    return tiktoken.Encoding("test", pat_str=tok.pattern, mergeable_ranks=tok.mergeable_ranks,
                             special_tokens=tok.special_tokens)


def assert_same_as_tiktoken(tok: Tokenizer, enc: tiktoken.Encoding, text: str) -> None:
    assert tok.encode(text) == enc.encode(text, disallowed_special=()), repr(text)
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all"), repr(text)


def test_gpt2_known_ids(gpt2_tok):
    assert gpt2_tok.encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2_tok.special_tokens["<|endoftext|>"] == 50256  # specials follow the 50,256 ranks
    assert gpt2_tok.vocab_size == 50256 + len(SPECIAL_TOKENS)


@pytest.mark.parametrize("which", ["trained", "gpt2", "digits"])
def test_corpus_matches_tiktoken(which, gpt2_tok, trained_tok, digits_tok):
    tok = {"trained": trained_tok, "gpt2": gpt2_tok, "digits": digits_tok}[which]
    enc = tiktoken_of(tok)
    for text in CORPUS + [TEXT]:
        assert_same_as_tiktoken(tok, enc, text)
        assert tok.decode(tok.encode(text)) == text


# Code points unassigned in Python's Unicode database (Cn) are left out: the `regex` package and
# tiktoken's Rust regex crate ship different Unicode versions, so characters assigned only in the
# newest versions (e.g. U+0558, U+18E00) are letters to one engine and unassigned to the other.
ASSIGNED_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cn")))
TRICKY_TEXT = st.lists(st.sampled_from(list(" \t\n\r\x0b\x0c\xa0\u3000\u2028aZé1٣'sSdDtTlLvV.!中😀\u0301<|>")
                                       + SPECIAL_TOKENS + ["<|end", "|>", "'LL", "'Re", "123456"])).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(ASSIGNED_TEXT, TRICKY_TEXT))
def test_random_unicode_matches_tiktoken(gpt2_tok, trained_tok, digits_tok, text):
    for tok in (gpt2_tok, trained_tok, digits_tok):
        assert_same_as_tiktoken(tok, tiktoken_of_cached(tok), text)
        assert tok.decode(tok.encode(text)) == text


_ENC_CACHE = {}


def tiktoken_of_cached(tok):
    if id(tok) not in _ENC_CACHE:
        _ENC_CACHE[id(tok)] = tiktoken_of(tok)
    return _ENC_CACHE[id(tok)]


def test_lone_surrogates_like_tiktoken(gpt2_tok):
    text = "a\ud800b \udfff"  # not encodable as UTF-8: both replace them with U+FFFD
    assert gpt2_tok.encode(text) == tiktoken_of_cached(gpt2_tok).encode(text, disallowed_special=())
    assert gpt2_tok.decode(gpt2_tok.encode(text)) == "a\ufffdb \ufffd"


def test_arbitrary_ranks_match_tiktoken():
    """Equality must hold for any ranks, not just BPE-trained ones: shuffle byte ranks, odd merges."""
    import random
    rng = random.Random(0)
    base = list(range(256))
    rng.shuffle(base)
    ranks = {bytes([b]): r for b, r in zip(range(256), base)}
    words = [w.encode() for w in TEXT.split()] + [b"aaa", b"aa", b" the", b"th", b"he", b"\xe6\x9c"]
    for w in words:
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + 5) + 1):
                if w[i:j] not in ranks and rng.random() < 0.5:
                    ranks[w[i:j]] = len(ranks)
    for pattern in ("gpt2", "gpt4", r"\S+|\s+", r"(\w)+|(\W)"):  # groups: whole matches still count
        tok = Tokenizer(ranks, pattern, SPECIAL_TOKENS)
        enc = tiktoken_of(tok)
        for text in CORPUS + [TEXT, "aaaaaaa the then"]:
            assert_same_as_tiktoken(tok, enc, text)


def test_long_chunks_heap_merge_matches_tiktoken(gpt2_tok, trained_tok, monkeypatch):
    """Long chunks take the O(n log n) heap path; force it everywhere and on a few long runs."""
    import transformer.tokenizer as tokenizer_module
    long_texts = ["a" * 3000, "ab" * 777 + "b", "x" + "中" * 500, " " * 2000 + "a", "1" * 999, "!?" * 900]
    for threshold in (1, 128):
        monkeypatch.setattr(tokenizer_module, "_LONG_PIECE", threshold)
        for tok in (gpt2_tok, trained_tok):
            tok.clear_cache()
            enc = tiktoken_of_cached(tok)
            for text in CORPUS + long_texts:
                assert tok.encode(text) == enc.encode(text, disallowed_special=()), text[:40]
            tok.clear_cache()


def test_digits_pattern_gives_every_digit_its_own_token(digits_tok):
    ids = digits_tok.encode("In 1234567 years, 3.14 ٣٤٥")
    pieces = [digits_tok.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("1234567314٣٤٥")


def test_training_is_byte_level_and_sized(trained_tok):
    tok = trained_tok
    assert tok.vocab_size == 700
    assert all(tok.id_to_bytes(i) == bytes([i]) for i in range(256))
    assert [tok.special_tokens[s] for s in SPECIAL_TOKENS] == list(range(700 - len(SPECIAL_TOKENS), 700))
    assert len(tok.encode(TEXT)) < 0.7 * len(TEXT.encode())  # merges compress the text they were trained on
    # the first merge is the most frequent adjacent byte pair within regex chunks (ties: smallest pair)
    import regex
    from collections import Counter
    pairs = Counter()
    for t in TRAIN_TEXTS:
        for chunk in regex.findall(GPT4_PATTERN, t):
            b = chunk.encode()
            pairs.update(zip(b, b[1:]))
    top = max(pairs.values())
    first = min(p for p, c in pairs.items() if c == top)
    assert tok.id_to_bytes(256) == bytes(first)
    again = Tokenizer.train(iter(TRAIN_TEXTS), vocab_size=700, pattern="gpt4")
    assert again.mergeable_ranks == tok.mergeable_ranks  # deterministic
    with pytest.raises(TokenizerError):
        Tokenizer.train("abc", vocab_size=100)
    chat = Tokenizer.train("<|user|>hi there<|end|><|assistant|><|answer|>hello<|end|>" * 50, vocab_size=300)
    merges = [chat.id_to_bytes(i) for i in range(256, chat.vocab_size - len(SPECIAL_TOKENS))]
    assert b" there" in merges and not any(b"<" in m or b"|" in m for m in merges)  # specials were cut out
    tiny = Tokenizer.train("abab", vocab_size=1000)  # runs out of pairs: a smaller vocab, specials last
    assert tiny.id_to_bytes(256) == b"ab" and tiny.vocab_size < 1000


def test_specials(trained_tok):
    tok = trained_tok
    text = "<|user|>hi<|end|>"
    plain = tok.encode(text)
    assert tok.special_tokens["<|user|>"] not in plain and tok.decode(plain) == text
    ids = tok.encode(text, allowed_special="all")
    assert ids[0] == tok.encode_special("<|user|>") and ids[-1] == tok.encode_special("<|end|>")
    assert tok.decode(ids) == text
    only_end = tok.encode(text, allowed_special={"<|end|>"})
    assert only_end[-1] == tok.encode_special("<|end|>") and tok.encode_special("<|user|>") not in only_end
    assert tok.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [tok.encode_special("<|endoftext|>")]
    with pytest.raises(TokenizerError, match="unknown special"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TokenizerError, match="unknown special"):
        tok.encode_special("<|nope|>")
    with pytest.raises(TokenizerError, match="invalid token id"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TokenizerError, match="invalid token id"):
        tok.decode([1.5])
    import torch  # sampled ids arrive as tensors
    assert tok.decode(torch.tensor(ids)) == text and tok.decode(iter(ids)) == text


def test_save_load_round_trip(trained_tok, tmp_path):
    trained_tok.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "tokenizer.tiktoken"]
    loaded = Tokenizer.load(str(tmp_path))
    assert loaded.mergeable_ranks == trained_tok.mergeable_ranks
    assert loaded.special_tokens == trained_tok.special_tokens and loaded.pattern == GPT4_PATTERN
    assert loaded.encode(TEXT, allowed_special="all") == trained_tok.encode(TEXT, allowed_special="all")
    # the ranks file is tiktoken's own format
    from tiktoken.load import load_tiktoken_bpe
    assert load_tiktoken_bpe(str(tmp_path / "tokenizer.tiktoken")) == trained_tok.mergeable_ranks


def test_file_errors(tmp_path, trained_tok):
    with pytest.raises(TokenizerError, match="missing"):
        Tokenizer.load(str(tmp_path / "nope"))
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.from_tiktoken_file(str(tmp_path / "nope.tiktoken"))
    trained_tok.save(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="corrupt"):
        Tokenizer.load(str(tmp_path))
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(TokenizerError, match="line 2"):
        Tokenizer.from_tiktoken_file(str(bad))
    bad.write_text("IQ== 0\n")
    with pytest.raises(TokenizerError, match="single-byte"):
        Tokenizer.from_tiktoken_file(str(bad))


def test_from_tiktoken_file(tmp_path):
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"abc": 257}
    path = tmp_path / "r.tiktoken"
    path.write_text("".join(f"{base64.b64encode(b).decode()} {r}\n" for b, r in ranks.items()))
    tok = Tokenizer.from_tiktoken_file(str(path), pattern=r"\w+|\W", special_tokens={"<|endoftext|>": 300})
    assert tok.encode("abc ab") == [257, ord(" "), 256]
    assert tok.vocab_size == 301 and tok.encode("<|endoftext|>", allowed_special="all") == [300]


def test_stream_decoder(gpt2_tok, trained_tok):
    for tok in (gpt2_tok, trained_tok):
        text = "中文😀👨‍👩‍👧 naïve ok"
        ids = [b for b in text.encode()]  # worst case: one byte per token
        ids = [tok.mergeable_ranks[bytes([b])] for b in ids]
        dec = StreamDecoder(tok)
        pieces = [dec.push(i) for i in ids] + [dec.flush()]
        assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)
        assert pieces[0] == "" and pieces[2] == "中"  # nothing until a character is complete
        pieces = [dec.push(i) for i in tok.encode(text)] + [dec.flush()]
        assert "".join(pieces) == text
    dec = StreamDecoder(trained_tok)
    assert dec.push(0xE4) == "" and dec.flush() == "\ufffd"  # a truncated char at the end
    assert dec.push(0xFF) == "\ufffd" and dec.push(ord("a")) == "a"  # invalid byte


def run_cli(args, stdin):
    """The real `python -m transformer.tokenize` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "transformer.tokenize", *args], input=stdin.encode(),
                          capture_output=True, timeout=120)


def run_main(monkeypatch, args, stdin):
    """The same CLI in-process (a subprocess costs seconds of imports): returns (rc, stdout)."""
    from transformer.tokenize import main
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
    monkeypatch.setattr(sys, "stdout", out)
    try:
        rc = main(args)
    except SystemExit as e:  # argparse: --help, bad arguments
        rc = e.code
    finally:
        out.flush()
        monkeypatch.undo()
    return rc, out.buffer.getvalue().decode()


def test_cli(trained_tok, tmp_path, monkeypatch, capsys):
    trained_tok.save(str(tmp_path))
    text = "Hello <|user|> 世界 😀\n"
    out = run_cli(["--tokenizer", str(tmp_path)], text)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert json.loads(lines[0]) == trained_tok.encode(text)
    assert len([ln for ln in lines if not ln.startswith("#")]) == 1 + len(trained_tok.encode(text))
    rc, stdout = run_main(monkeypatch, ["--tokenizer", str(tmp_path), "--allow-special"], text)
    assert rc == 0 and trained_tok.encode_special("<|user|>") in json.loads(stdout.splitlines()[0])
    rc, stdout = run_main(monkeypatch, ["--tokenizer", str(tmp_path), "--jsonl"], json.dumps("a b") + "\n" + json.dumps(text) + "\n")
    assert rc == 0 and [json.loads(ln) for ln in stdout.splitlines()] == [trained_tok.encode("a b"), trained_tok.encode(text)]
    ids = trained_tok.encode("héllo wörld")
    rc, stdout = run_main(monkeypatch, ["--tokenizer", str(tmp_path), "--decode"], json.dumps(ids) + "\n" + " ".join(map(str, ids)) + "\n")
    assert rc == 0 and stdout == "héllo wörld\nhéllo wörld\n"
    capsys.readouterr()
    rc, _ = run_main(monkeypatch, ["--tokenizer", str(tmp_path), "--decode"], "1 two\n")
    assert rc == 2 and "line 1" in capsys.readouterr().err
    rc, _ = run_main(monkeypatch, ["--tokenizer", str(tmp_path / "missing")], "x")
    assert rc == 2 and "missing" in capsys.readouterr().err
    rc, stdout = run_main(monkeypatch, ["--help"], "")
    assert rc == 0 and "--jsonl" in stdout


def test_cli_gpt2_ranks():
    out = run_cli(["--ranks", gpt2_ranks_path(), "--pattern", "gpt2", "--jsonl"], json.dumps("Hello, world!") + "\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [15496, 11, 995, 0]
