"""The one SFT trainer on a tiny model: the loss falls, resume equals an uninterrupted run, both
CLIs (sft.train, agent_sft.train) run end to end, and Path B starts from a tiny Hugging Face GPT-2
directory (our tokenizer files, or GPT-2's vocab.json + merges.txt) with our special tokens added."""
import json
from pathlib import Path

import pytest
import torch
import transformers  # a test dependency (make dev): builds the tiny Hugging Face GPT-2 directories

from agent_sft.generate import build, write
from model.reporting import checkpoint_shapes
from sft.data import load_conversations
from sft.hf_init import bytes_to_unicode, load_hf_tokenizer, resize_vocab
from sft.train import main as sft_main
from sft.trainer import SFTConfig, train
from transformer import GPT, GPTConfig
from transformer.checkpoint import load_checkpoint, save_checkpoint
from transformer.tokenizer import SPECIAL_TOKENS, Tokenizer

FAST = ["--batch_size=8", "--eval_interval=5", "--eval_batches=2", "--warmup_steps=2"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: more threads only contend
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def convs():
    return load_conversations()[:120]


@pytest.fixture(scope="module")
def run(tmp_path_factory, convs):
    """runs/t with a tokenizer and an untrained tiny base checkpoint (Path A)."""
    root = tmp_path_factory.mktemp("runs")
    texts = [m["content"] for c in convs for m in c["messages"]]
    tok = Tokenizer.train(texts, 400)
    tok.save(str(root / "t" / "tokenizer"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=96, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32))
    save_checkpoint(root / "t" / "base", model, {"stage": "base", "tokenizer": str(root / "t" / "tokenizer")})
    return root


def fresh(run):
    model, _ = load_checkpoint(run / "t" / "base")
    return model, Tokenizer.load(str(run / "t" / "tokenizer"))


def test_loss_falls(run, convs, tmp_path):
    model, tok = fresh(run)
    cfg = SFTConfig(max_steps=40, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=4, eval_interval=20, eval_batches=2)
    s = train(model, tok, convs[:100], convs[100:], cfg, tmp_path / "sft", {"stage": "sft"},
              log_path=tmp_path / "log.jsonl", plot_path=tmp_path / "loss.png")
    assert s["complete"] and s["steps"] == 40
    assert s["train_loss_last20"] < s["train_loss_first"] - 1.0, s
    assert s["val_loss_last"] < s["val_loss_first"] - 0.5, s
    meta = json.loads((tmp_path / "sft" / "meta.json").read_text())
    assert meta["stage"] == "sft" and meta["step"] == 40 and meta["losses"]["val"] == s["val_loss_last"]
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum("train_loss" in r for r in rows) == 40 and sum("val_loss" in r for r in rows) == 3
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_dropout_override_applies_to_every_dropout_and_is_saved(run, convs, tmp_path):
    model, tok = fresh(run)
    assert model.config.dropout == 0.0
    cfg = SFTConfig(max_steps=2, batch_size=8, warmup_steps=1, eval_interval=100, eval_batches=1, dropout=0.3)
    train(model, tok, convs[:20], convs[100:], cfg, tmp_path / "d", {"stage": "sft"})
    ps = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(ps) == 1 + 2 * model.config.n_layer and set(ps) == {0.3}
    saved, _ = load_checkpoint(tmp_path / "d")
    assert saved.config.dropout == 0.3
    kept, _ = fresh(run)  # the default (-1) keeps the checkpoint's dropout
    train(kept, tok, convs[:20], convs[100:], SFTConfig(max_steps=1, batch_size=8, eval_batches=1), tmp_path / "k",
          {"stage": "sft"})
    assert {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    with pytest.raises(ValueError, match="dropout"):
        train(kept, tok, convs[:20], convs[100:], SFTConfig(max_steps=1, dropout=1.0), tmp_path / "x", {})


def test_resume_equals_uninterrupted(run, convs, tmp_path):
    cfg = dict(max_steps=12, batch_size=8, lr=3e-3, warmup_steps=2, eval_interval=100, eval_batches=1)
    model, tok = fresh(run)
    train(model, tok, convs[:100], convs[100:], SFTConfig(**cfg), tmp_path / "a", {"stage": "sft"})
    model_b, _ = fresh(run)
    s = train(model_b, tok, convs[:100], convs[100:], SFTConfig(**cfg, stop_after=5), tmp_path / "b", {"stage": "sft"})
    assert not s["complete"] and (tmp_path / "b.partial").is_dir() and not (tmp_path / "b").exists()
    model_c, _ = fresh(run)  # a new process would start from base again; resume must overwrite all of it
    s = train(model_c, tok, convs[:100], convs[100:], SFTConfig(**cfg), tmp_path / "b", {"stage": "sft"}, resume=True)
    assert s["complete"] and not (tmp_path / "b.partial").exists()
    a, _ = load_checkpoint(tmp_path / "a")
    c, _ = load_checkpoint(tmp_path / "b")
    for (name, p), q in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(SystemExit, match="nothing|no interrupted"):
        train(fresh(run)[0], tok, convs[:10], [], SFTConfig(**cfg), tmp_path / "none", {}, resume=True)


def test_both_clis_share_the_trainer(run, tmp_path):
    report = tmp_path / "sft_cpu.json"
    sft_main(["--runs-dir", str(run), "--run", "t", "--preset", "cpu", "--report", str(report),
              "--max_steps=6", *FAST])
    meta = json.loads((run / "t" / "sft" / "meta.json").read_text())
    assert meta["stage"] == "sft" and meta["init"]["checkpoint"].endswith("base") and meta["git_commit"]
    assert Path(meta["tokenizer"]) == run / "t" / "tokenizer" and meta["data"]["train"] > 400
    traces = tmp_path / "traces"
    write(build(0, 150, 20, 2), traces)
    from agent_sft.train import main as agent_main
    agent_main(["--runs-dir", str(run), "--run", "t", "--preset", "cpu", "--report", str(report),
                "--traces", str(traces), "--max_steps=6", *FAST])
    meta = json.loads((run / "t" / "agent" / "meta.json").read_text())
    assert meta["stage"] == "agent" and meta["init"]["checkpoint"].endswith("sft")
    assert meta["data"]["train_traces"] == 150 and meta["data"]["chat_train"] > 0
    shapes = checkpoint_shapes(meta)  # what the server holds answers after results to
    assert shapes["calc"][""] == [["The answer is ", "."]] and shapes["lookup"][""] == [["", "."]]
    rep = json.loads(report.read_text())
    assert rep["sft"]["steps"] == rep["agent"]["steps"] == 6 and rep["total_wall_s"] > 0
    assert (tmp_path / "sft_loss_agent_cpu.png").is_file()
    with pytest.raises(SystemExit, match="unknown config field"):
        sft_main(["--runs-dir", str(run), "--run", "t", "--no_such_field=1"])


def make_hf_dir(path: Path, tok: Tokenizer | None, vocab_size: int) -> Path:
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    if tok is not None:
        tok.save(str(path))
    return path


def test_path_b_from_a_tiny_hf_dir_with_our_tokenizer(run, convs, tmp_path):
    texts = [m["content"] for c in convs for m in c["messages"]]
    # a tokenizer that knows only <|endoftext|>: the other seven special tokens must be added
    tok = Tokenizer.train(texts, 300, special_tokens=["<|endoftext|>"])
    hf = make_hf_dir(tmp_path / "hf", tok, tok.vocab_size)
    sft_main(["--runs-dir", str(run), "--run", "hf", "--init-from-hf", str(hf), "--report", "none",
              "--max_steps=4", *FAST])
    model, meta = load_checkpoint(run / "hf" / "sft")
    run_tok = Tokenizer.load(meta["tokenizer"])
    assert set(SPECIAL_TOKENS) <= set(run_tok.special_tokens)
    assert run_tok.special_tokens["<|endoftext|>"] == tok.special_tokens["<|endoftext|>"]
    assert model.config.vocab_size == run_tok.vocab_size == tok.vocab_size + 7
    assert meta["init"]["hf"] == str(hf.resolve())


def test_resize_vocab_uses_the_mean_embedding():
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16))
    big = resize_vocab(m, 53)
    w, old = big.transformer.wte.weight, m.transformer.wte.weight
    assert torch.equal(w[:50], old) and torch.allclose(w[50:], old.mean(0).expand(3, -1))
    assert big.lm_head.weight is big.transformer.wte.weight  # still tied


def test_gpt2_vocab_and_merges_convert_to_equivalent_ranks(tmp_path):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("Ġa", "n"), ("Ġan", "d")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = load_hf_tokenizer(tmp_path)
    ref = transformers.GPT2Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in ["the cat and the hat", "in the end, and then", "Ünïcode ✓ and the"]:
        assert tok.encode(text) == ref.encode(text), text
    assert tok.special_tokens["<|endoftext|>"] == 256 + len(merges)
    assert set(SPECIAL_TOKENS) <= set(tok.special_tokens) and tok.vocab_size == len(vocab) + 7


def test_max_time_ends_on_time_with_a_decayed_schedule(run, convs, tmp_path):
    model, tok = fresh(run)
    cfg = SFTConfig(max_steps=100000, batch_size=8, lr=3e-3, min_lr=1e-4, warmup_steps=2, eval_interval=10**6,
                    eval_batches=1, max_time=1.5)
    s = train(model, tok, convs[:100], convs[100:], cfg, tmp_path / "sft", {"stage": "sft"},
              log_path=tmp_path / "log.jsonl")
    assert s["complete"] and s["time_limited"] and 0 < s["steps"] < 100000 and s["time_s"] < 5
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if "lr" in line]
    assert rows[-1]["lr"] < 0.2 * cfg.lr  # the cosine ran to (nearly) its end
    assert json.loads((tmp_path / "sft" / "meta.json").read_text())["time_limited"] is True


def test_bench_times_both_losses_on_the_same_batches(tmp_path):
    from sft.bench import TRACES, main as bench_main
    convs = [json.loads(line) for line in TRACES.read_text(encoding="utf-8").splitlines()[:40]]
    tok = Tokenizer.train([m["content"] or "" for c in convs for m in c["messages"]], 400)
    tok.save(str(tmp_path / "tok"))
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in convs))
    out = tmp_path / "bench.json"
    assert bench_main(["--tokenizer", str(tmp_path / "tok"), "--data", str(data), "--steps", "3", "--rounds", "2",
                       "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["model"]["vocab_size"] == -(-tok.vocab_size // 64) * 64 and r["torch_threads"] == 1
    assert all(len(v) == 2 and min(v) > 0 for v in r["round_seconds"].values())
    assert 0 < r["learned_share_of_positions"] < 1
    assert r["speedup"] == round(r["ms_per_step"]["full_logits"] / r["ms_per_step"]["learned_loss"], 3)
    with pytest.raises(SystemExit, match="no tokenizer"):
        bench_main(["--tokenizer", str(tmp_path / "missing")])
