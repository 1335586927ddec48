"""Pretrain a GPT on the run's token shards: runs/<run>/data -> runs/<run>/base.

    python -m train.pretrain                                   # preset cpu (or gpu with CUDA)
    python -m train.pretrain --preset cpu --model.n_layer=6 --train.max_steps=200 --train.lr=1e-3
    python -m train.pretrain --resume                          # continue the exact trajectory
    torchrun --nproc_per_node=2 -m train.pretrain -- --run NAME  # DDP: same global batch, split over ranks
                    # ("--" keeps torchrun from taking --run for its own --run-path)

AdamW (decay on 2-D weights), linear warmup + cosine decay, grad clipping, grad accumulation up to
train.tokens_per_step, bf16 autocast on CUDA. Writes a checkpoint every train.ckpt_interval steps and
at the end (also on Ctrl-C), training state for --resume (base_state.pt), base_log.jsonl and base_loss.png.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from transformer import GPT
from transformer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from transformer.tokenizer import Tokenizer

from .config import (PRESETS, Config, apply_overrides, grad_accum_steps, make_config, padded_vocab,
                     parse_overrides)
from .data import Batches, DataError, TokenShards, unigram_entropy
from .common import lr_at
from .metrics import open_log, peak_flops, plot_log, process_age_s
from .state import StopFlag, git_commit, rng_state, set_rng_state

def train(cfg: Config, run: str = "default", device: str = "auto", resume: bool = False,
          runs_dir: str | Path = "runs", overrides: dict | None = None, verbose: bool = True) -> dict:
    """Train (or resume) runs/<run>/base; returns a summary dict. Works under torchrun (DDP)."""
    t_start = time.time()
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank, world, local = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                          int(os.environ.get("LOCAL_RANK", 0))) if ddp else (0, 1, 0)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and ddp:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    dev = torch.device(device)
    if ddp:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    master = rank == 0
    say = (lambda *a: tqdm.write(" ".join(map(str, a)))) if master and verbose else (lambda *a: None)
    out = Path(runs_dir) / run
    ckpt_dir, state_path = out / "base", out / "base_state.pt"

    state = None
    if resume:  # the saved config wins (so --resume needs no flags); explicit overrides still apply
        if not state_path.is_file():
            raise CheckpointError(f"--resume: no training state at {state_path}; train without --resume first")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            saved = Config.from_dict(state["config"])
        except Exception as e:  # unpickling errors come in many types; all mean "not our state file"
            raise CheckpointError(f"{state_path} is corrupt or not a training state ({type(e).__name__}: "
                                  f"{str(e)[:200]}); delete it and train without --resume") from None
        saved.train.stop_after = 0  # a limit of the interrupted invocation, not of the run
        cfg = apply_overrides(saved, overrides or {})
    t = cfg.train
    data_dir = Path(t.data or out / "data")
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = padded_vocab(train_data.vocab_size)
    if cfg.model.vocab_size < train_data.vocab_size:
        raise DataError(f"model.vocab_size={cfg.model.vocab_size} < the data's vocab {train_data.vocab_size}")
    accum = grad_accum_steps(cfg, world)
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    np.random.seed(t.seed)
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
    elif t.threads > 0:
        torch.set_num_threads(t.threads)

    raw = GPT(cfg.model)
    start = 0
    if state is not None:
        loaded, meta = load_checkpoint(ckpt_dir)
        if loaded.config.shape() != cfg.model.shape():
            raise CheckpointError(f"{ckpt_dir} holds model {loaded.config.shape()}, config says {cfg.model.shape()}")
        if meta.get("step") != state["step"]:
            raise CheckpointError(f"{state_path} is from step {state['step']} but {ckpt_dir} from step "
                                  f"{meta.get('step')} (an interrupted save?); cannot resume exactly")
        raw.load_state_dict(loaded.state_dict())
        start = state["step"]
    raw.to(dev)
    opt = raw.configure_optimizer(t.weight_decay, t.lr, (t.beta1, t.beta2), dev.type)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    model = torch.compile(raw) if t.compile else raw
    fwd = model  # evaluation bypasses DDP (no gradient sync needed)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if dev.type == "cuda" else None)
    use_bf16 = t.dtype == "bf16" or (t.dtype == "auto" and dev.type == "cuda")
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    batches = Batches(train_data, cfg.model.block_size, t.batch_size, accum, t.seed, rank, world, dev)
    val_batches = Batches(val_data, cfg.model.block_size, t.batch_size, 1, t.seed, rank, world, dev)
    tokenizer_dir = data_dir.parent / "tokenizer"  # prepare writes them side by side
    tok = Tokenizer.load(str(tokenizer_dir)) if master and tokenizer_dir.is_dir() else None
    log_path = out / "base_log.jsonl"
    log = open_log(log_path, start if resume else None) if master else None
    tokens_per_step = t.batch_size * cfg.model.block_size * accum * world
    flops_tok = raw.flops_per_token(cfg.model.block_size)
    peak = peak_flops(dev)
    say(f"model {raw.num_params() / 1e6:.2f}M params | {cfg.model.n_layer}L {cfg.model.n_head}H "
        f"{cfg.model.n_embd}d block {cfg.model.block_size} vocab {cfg.model.vocab_size} | {world} x {device} "
        f"{'bf16' if use_bf16 else 'fp32'} | {tokens_per_step:,} tokens/step = {world} proc x {accum} accum x "
        f"{t.batch_size} x {cfg.model.block_size} | train {train_data.n_tokens:,} val {val_data.n_tokens:,} tokens")

    @torch.no_grad()
    def evaluate() -> float:
        fwd.eval()
        total = torch.zeros((), device=dev)
        for k in range(rank, t.eval_iters, world):
            x, y = val_batches.eval_batch(k)
            with ctx:
                total += fwd(x, y)[1].float()
        if ddp:
            dist.all_reduce(total)
        fwd.train()
        return total.item() / t.eval_iters

    def sample() -> None:
        if tok is None:
            return
        eot = tok.special_tokens["<|endoftext|>"]
        raw.eval()
        g = torch.Generator(device=dev).manual_seed(t.seed)
        ids = raw.generate(torch.tensor([[eot]], device=dev), min(t.sample_tokens, cfg.model.block_size - 1),
                           temperature=0.8, top_k=50, generator=g)[0, 1:].tolist()
        raw.train()
        say("--- sample ---\n" + tok.decode(ids[:ids.index(eot)] if eot in ids else ids) + "\n--------------")

    def save(step: int, train_loss: float | None, val_loss: float | None) -> None:
        if not master:
            return
        meta = {"stage": "base", "step": step, "train_loss": train_loss, "val_loss": val_loss,
                "data": str(data_dir.resolve()), "sources": train_data.index.get("sources"),
                "tokenizer": str(tokenizer_dir.resolve()), "git_commit": git_commit(), "config": cfg.to_dict()}
        save_checkpoint(ckpt_dir, raw, meta)
        tmp = state_path.with_suffix(".tmp")
        torch.save({"step": step, "optimizer": opt.state_dict(), "rng": rng_state(), "config": cfg.to_dict(),
                    "sampler": {"seed": t.seed, "step": step}}, tmp)
        os.replace(tmp, state_path)  # atomic: never half a state file

    stop = StopFlag()
    step, train_loss, val_loss, step0_loss = start, None, None, None
    loss_acc = torch.zeros((), device=dev)
    bar = tqdm(total=t.max_steps, initial=start, disable=not (master and verbose), dynamic_ncols=True, unit="step")
    t_train, t_log, n_log = time.time(), time.time(), 0
    tok_s = mfu = None
    upcoming = batches.step(step) if step < t.max_steps else []
    try:
        while step < t.max_steps:
            if t.eval_iters and step % t.eval_interval == 0 and (step > start or not resume):
                val_loss = evaluate()
                if master:
                    log.log({"step": step, "val_loss": val_loss})
                    bar.set_description(f"val {val_loss:.3f}")
            if t.sample_interval and step % t.sample_interval == 0 and step > start:
                sample()
            if step % t.ckpt_interval == 0 and step > start:
                save(step, train_loss, val_loss)
            lr = lr_at(step, t.lr, t.min_lr, t.warmup_steps, t.max_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            for micro, (x, y) in enumerate(upcoming):
                if ddp:
                    model.require_backward_grad_sync = micro == accum - 1
                with ctx:
                    loss = model(x, y)[1]
                if step == 0 and micro == 0:
                    step0_loss = loss.item()
                    say(f"step 0 loss {step0_loss:.4f} | ln(vocab={cfg.model.vocab_size}) = "
                        f"{math.log(cfg.model.vocab_size):.4f} (uniform guessing)")
                (loss / accum).backward()
                loss_acc += loss.detach() / accum
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw.parameters(), t.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            # read and upload the next step's windows now, while the GPU still works through this step's
            # queue, rather than after the logging sync below, which would leave the GPU idle meanwhile
            upcoming = batches.step(step + 1) if step + 1 < t.max_steps else []
            step += 1
            n_log += 1
            bar.update(1)
            if step % t.log_interval == 0 or step == t.max_steps:
                if ddp:
                    dist.all_reduce(loss_acc)
                    loss_acc /= world
                train_loss = loss_acc.item() / n_log
                now = time.time()
                tok_s = n_log * tokens_per_step / (now - t_log)
                mfu = tok_s * flops_tok / (peak * world) if peak else None
                t_log, n_log = now, 0
                loss_acc.zero_()
                if master:
                    log.log({"step": step, "loss": train_loss, "lr": lr, "tokens_per_s": tok_s, "mfu": mfu,
                               "time": now - t_train})
                    bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}",
                                    **({"mfu": f"{100 * mfu:.1f}%"} if mfu else {}))
            flag = stop.stop or (t.stop_after and step - start >= t.stop_after) or \
                (t.max_time and time.time() - t_train >= t.max_time)
            if ddp:
                f = torch.tensor(float(bool(flag)), device=dev)
                dist.all_reduce(f, op=dist.ReduceOp.MAX)
                flag = f.item() > 0
            if flag:
                break
    finally:
        bar.close()
    interrupted = stop.stop
    signal.signal(signal.SIGINT, signal.default_int_handler)
    train_time = time.time() - t_train
    val_loss = evaluate() if t.eval_iters else None  # eval_iters=0: no validation (benchmarks)
    if master:
        if n_log:  # a partial log interval: report its mean loss too
            train_loss = loss_acc.item() / n_log
        if val_loss is not None:
            log.log({"step": step, "val_loss": val_loss})
        save(step, train_loss, val_loss)
        plot_log(log_path, out / "base_loss.png", f"{run}: pretraining")
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    if master and not interrupted and step >= t.max_steps:
        sample()
    h = unigram_entropy(val_data) if master else None
    if master:
        say(f"step {step}: train loss {_f(train_loss)} | val loss {_f(val_loss)} | val unigram entropy {_f(h)} "
            f"nats | ln(vocab) {math.log(cfg.model.vocab_size):.4f} | {train_time:.0f}s training -> {ckpt_dir}")
    return {"run": run, "device": device, "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
            "cpu", "world": world, "rank": rank, "params": raw.num_params(), "steps": step, "start_step": start,
            "tokens": (step - start) * tokens_per_step, "train_time_s": train_time,
            "wall_time_s": time.time() - t_start, "tokens_per_s": tok_s, "mfu": mfu, "step0_loss": step0_loss,
            "final_train_loss": train_loss, "final_val_loss": val_loss, "val_unigram_entropy": h,
            "ln_vocab": math.log(cfg.model.vocab_size), "interrupted": interrupted, "config": cfg.to_dict()}


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(prog="python -m train.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Any config field: --model.FIELD=V / --train.FIELD=V (see train/config.py).")
    ap.add_argument("--run", default="default", help="run name: reads runs/<run>/data, writes runs/<run>/base")
    ap.add_argument("--preset", choices=list(PRESETS), help="default: gpu with CUDA, else cpu")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--resume", action="store_true", help="continue from runs/<run>/base + base_state.pt")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (= --train.compile=true)")
    ap.add_argument("--report", metavar="JSON", help="write a summary (times, losses, throughput) here")
    ap.add_argument("--runs-dir", default="runs", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        if args.compile:
            overrides["train.compile"] = True
        preset = args.preset or ("gpu" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
        cfg = make_config(preset, overrides)
        summary = train(cfg, args.run, args.device, args.resume, args.runs_dir, overrides)
    except (ValueError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.report and summary["rank"] == 0:
        summary.update(preset=preset, command=" ".join(["python -m train.pretrain"] + (argv or sys.argv[1:])),
                       main_wall_time_s=time.time() - t0, process_wall_time_s=process_age_s())
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
