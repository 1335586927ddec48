"""train.pretrain: loss falls, exact resume, DDP (gloo, 2 processes) == one process, Ctrl-C saves,
bad checkpoints fail clearly, config overrides, and train.sample on the result."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train.config import make_config
import train.prepare as prepare_module
from train.prepare import prepare
from train.pretrain import main as pretrain_main
from train.pretrain import train
from train.sample import main as sample_main
from transformer.checkpoint import CheckpointError, load_checkpoint

WORDS = "the king queen lord lady speaks sees loves hates sword crown night day fair foul".split()
TINY = {"model.block_size": "32", "model.n_layer": "2", "model.n_head": "2", "model.n_embd": "32",
        "train.batch_size": "8", "train.max_steps": "8", "train.warmup_steps": "2", "train.eval_interval": "4",
        "train.eval_iters": "2", "train.log_interval": "1", "train.lr": "1e-2", "train.min_lr": "1e-3",
        "train.max_time": "0"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads, and on a busy machine OpenMP threads wait on each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """runs/<name>/{data,tokenizer} prepared from a small synthetic corpus with a learnable structure."""
    tmp = tmp_path_factory.mktemp("pretrain")
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize() + "." for _ in range(12)]
    for i in range(20):  # lines drawn from 12 fixed sentences: the first words of a line predict the rest
        (tmp / f"d{i:02d}.txt").write_text("\n".join(rng.choice(sentences) for _ in range(60)) + "\n")
    with pytest.MonkeyPatch.context() as mp:  # independent of the repo's chat data
        mp.setattr(prepare_module, "chat_texts", lambda root: iter(()))
        prepare("base", [str(tmp / "*.txt")], vocab_size=320, block_size=32, runs_dir=tmp / "runs", verbose=False)
    return tmp / "runs"


def run_cli(runs: Path, run: str, *extra: str, prog=("-m", "train.pretrain"), **kw) -> subprocess.CompletedProcess:
    args = [f"--{k}={v}" for k, v in TINY.items()] + [f"--train.data={runs / 'base' / 'data'}"]
    return subprocess.run([sys.executable, *prog, "--preset", "cpu", "--device", "cpu", "--run", run,
                           "--runs-dir", str(runs), *args, *extra], capture_output=True, text=True, env=ENV,
                          timeout=120, **kw)


def tiny_cfg(runs: Path, **over):
    return make_config("cpu", {**TINY, "train.data": str(runs / "base" / "data"), **over})


def weights(runs: Path, run: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(runs / run / "base")[0].state_dict()


def test_loss_falls_and_outputs(runs):
    s = train(tiny_cfg(runs, **{"train.max_steps": "40", "train.eval_interval": "20"}), "falls", "cpu",
              runs_dir=runs, verbose=False)
    assert s["step0_loss"] == pytest.approx(s["ln_vocab"], abs=0.3)  # an untrained model guesses uniformly
    assert s["final_val_loss"] < s["val_unigram_entropy"] < s["step0_loss"] - 2
    out = runs / "falls"
    meta = json.loads((out / "base" / "meta.json").read_text())
    assert meta["stage"] == "base" and meta["step"] == 40 and Path(meta["tokenizer"]).is_dir()
    assert (out / "base_loss.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (out / "base_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 20, 40]


def test_resume_is_exact(runs):
    train(tiny_cfg(runs), "full", "cpu", runs_dir=runs, verbose=False)
    s = train(tiny_cfg(runs, **{"train.stop_after": "3"}), "cut", "cpu", runs_dir=runs, verbose=False)
    assert s["steps"] == 3 and torch.load(runs / "cut" / "base_state.pt", weights_only=True)["step"] == 3
    s = train(tiny_cfg(runs), "cut", "cpu", resume=True, runs_dir=runs, verbose=False)
    assert s["start_step"] == 3 and s["steps"] == 8
    a, b = weights(runs, "full"), weights(runs, "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    log = lambda r: [x for x in (runs / r / "base_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [json.loads(x)["loss"] for x in log("full")] == [json.loads(x)["loss"] for x in log("cut")]


def test_ddp_gloo_matches_single_process(runs):
    # global batch 4 micro-batches of 8: one process x 4 accum == two processes x 2 accum
    tps = str(8 * 32 * 4)
    lr = "--train.lr=1e-3"  # Adam moves every weight by ~lr: float reassociation shows up in proportion
    single = run_cli(runs, "single", f"--train.tokens_per_step={tps}", "--train.max_steps=4", lr)
    assert single.returncode == 0, single.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ddp = run_cli(runs, "ddp", f"--train.tokens_per_step={tps}", "--train.max_steps=4", lr,
                  prog=("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                        f"--master_port={port}", "-m", "train.pretrain", "--"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 x cpu" in ddp.stderr + ddp.stdout and "2 proc x 2 accum" in ddp.stderr + ddp.stdout
    losses = lambda r: [json.loads(x)["loss"] for x in (runs / r / "base_log.jsonl").read_text().splitlines()
                        if '"loss"' in x]
    assert losses("ddp") == pytest.approx(losses("single"), abs=1e-6)
    a, b = weights(runs, "single"), weights(runs, "ddp")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_ctrl_c_saves_a_resumable_checkpoint(runs):
    proc = subprocess.Popen([sys.executable, "-m", "train.pretrain", "--preset", "cpu", "--device", "cpu",
                             "--run", "sigint", "--runs-dir", str(runs), *[f"--{k}={v}" for k, v in TINY.items()],
                             f"--train.data={runs / 'base' / 'data'}", "--train.max_steps=100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    log = runs / "sigint" / "base_log.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and '"loss"' in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    state = torch.load(runs / "sigint" / "base_state.pt", weights_only=True)
    meta = json.loads((runs / "sigint" / "base" / "meta.json").read_text())
    assert 0 < state["step"] == meta["step"] < 100000
    assert set(state["rng"]) >= {"torch", "python", "numpy"} and state["sampler"]["step"] == state["step"]


def test_bad_checkpoints_fail_clearly(runs, capsys):
    train(tiny_cfg(runs, **{"train.max_steps": "2"}), "bad", "cpu", runs_dir=runs, verbose=False)
    with pytest.raises(CheckpointError, match="holds model"):  # mismatched model shape
        train(tiny_cfg(runs), "bad", "cpu", resume=True, runs_dir=runs, overrides={"model.n_layer": "3"},
              verbose=False)
    weights_file = runs / "bad" / "base" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])  # truncated weights
    with pytest.raises(CheckpointError, match="truncated or not a safetensors"):
        train(tiny_cfg(runs), "bad", "cpu", resume=True, runs_dir=runs, verbose=False)
    (runs / "bad" / "base_state.pt").write_bytes(b"not a torch file")
    assert pretrain_main(["--run", "bad", "--runs-dir", str(runs), "--resume"]) == 2
    assert "base_state.pt is corrupt" in capsys.readouterr().err
    assert pretrain_main(["--run", "nothing", "--runs-dir", str(runs), "--resume"]) == 2
    assert "no training state" in capsys.readouterr().err


def test_config_errors(runs, capsys):
    assert pretrain_main(["--model.n_layers=6"]) == 2
    assert "unknown field; model fields: block_size" in capsys.readouterr().err
    assert pretrain_main(["--train.lr=fast"]) == 2
    assert "'fast' is not a valid float" in capsys.readouterr().err
    assert pretrain_main(["--run", "missing", "--runs-dir", str(runs)]) == 2
    assert "run `python -m train.prepare` first" in capsys.readouterr().err
    cfg = make_config("gpt2-124m", {"train.lr": "1e-3", "model.n_layer": "6", "train.compile": "false"})
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.train.lr, cfg.train.compile) == (6, 768, 1e-3, False)


def test_sample_cli(runs, capsys):
    if not (runs / "falls" / "base").is_dir():
        train(tiny_cfg(runs), "falls", "cpu", runs_dir=runs, verbose=False)
    assert sample_main(["--checkpoint", str(runs / "falls" / "base"), "--prompt", "The king",
                        "--max-tokens", "50", "--seed", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The king") and len(out) > len("The king") + 10
