"""Pretraining throughput: our gpt2-124m preset vs Hugging Face GPT2LMHeadModel, same shape and batch.

    python -m train.bench --out reports/pretrain_h100.json     # on one GPU (bf16, our model compiled)
    python -m train.bench --quick --device cpu                 # tiny shape: checks the code paths only
    python -m train.bench --variant torch_loss=model.loss_backend=torch   # + an ablation, same run

Ours runs through the real training loop (train.pretrain.train: sampling windows from memmapped
shards, grad accumulation to 0.5M tokens/step, clipping, fused AdamW, bf16 autocast, torch.compile) on
random tokens, so the number is what `python -m train.pretrain --preset gpt2-124m` achieves. HF's model
gets the same batch shape, bf16 autocast, attn_implementation="sdpa" and fused AdamW, in a plain loop
(one optimizer step per micro-batch, no data loading: if anything, flattering to HF).
MFU = tokens/s x FLOPs/token (6 N + 12 L C T, N without position embeddings) / peak bf16 FLOP/s.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .config import make_config
from .metrics import peak_flops, read_rows
from .pretrain import train


def random_shards(directory: Path, n_tokens: int, vocab: int, seed: int = 0) -> None:
    """A train/val token-shard dir (train.prepare's format) of uniform random tokens."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_tokens), ("val", n_tokens // 10)):
        rng.integers(0, vocab, size=n, dtype=np.uint16).tofile(directory / f"{split}_000.bin")
        splits[split] = {"shards": [{"file": f"{split}_000.bin", "tokens": n}], "documents": 1, "bytes": 0, "tokens": n}
    (directory / "index.json").write_text(json.dumps({"format": "llm-stack-shards/1", "dtype": "uint16",
                                                      "vocab_size": vocab, "eot": vocab - 1, "sources": ["random"],
                                                      "splits": splits}))


def bench_ours(overrides: dict, steps: int, device: str, work: Path) -> dict:
    cfg = make_config("gpt2-124m", {**overrides, "train.max_steps": str(steps), "train.eval_iters": "0",
                                    "train.log_interval": "1", "train.warmup_steps": "2",
                                    "train.data": str(work / "data")})
    t0 = time.time()
    summary = train(cfg, "bench", device, runs_dir=work / "runs", verbose=False)
    rows = [r for r in read_rows(work / "runs" / "bench" / "base_log.jsonl") if "tokens_per_s" in r]
    for r in rows:
        mfu = "" if r["mfu"] is None else f"MFU {100 * r['mfu']:.1f}%"
        print(f"  ours step {r['step']:>3}: loss {r['loss']:.4f} {r['tokens_per_s']:>12,.0f} tok/s {mfu}", flush=True)
    timed = rows[2:] if len(rows) > 3 else rows[-1:]  # the first steps include compilation
    tok_s = statistics.median(r["tokens_per_s"] for r in timed)
    return {"tokens_per_s": tok_s, "steps_timed": len(timed), "first_step_s": rows[0]["time"],
            "wall_s_incl_compile": time.time() - t0, "final_loss": rows[-1]["loss"], "params": summary["params"],
            "config": summary["config"]}


def bench_hf(shape: dict, batch: int, steps: int, device: str) -> dict:
    from transformers import AutoModelForCausalLM, GPT2Config
    import transformers

    cfg = GPT2Config(vocab_size=shape["vocab_size"], n_positions=shape["block_size"], n_embd=shape["n_embd"],
                     n_layer=shape["n_layer"], n_head=shape["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(device).train()
    fused = torch.device(device).type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=fused)
    g = torch.Generator(device=device).manual_seed(0)
    warmup, T = 3, shape["block_size"]
    sync = torch.cuda.synchronize if fused else (lambda: None)
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        x = torch.randint(0, shape["vocab_size"], (batch, T), device=device, generator=g)
        with autocast:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    dt = time.perf_counter() - t0
    tok_s = steps * batch * T / dt
    print(f"  hf: {steps} steps of {batch}x{T} in {dt:.2f}s: {tok_s:,.0f} tok/s, loss {loss.item():.4f}", flush=True)
    return {"tokens_per_s": tok_s, "steps_timed": steps, "attn_implementation": model.config._attn_implementation,
            "transformers": transformers.__version__, "params": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/pretrain_h100.json", help="JSON report path")
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps of ours (0.5M tokens each)")
    ap.add_argument("--hf-steps", type=int, default=20, help="timed micro-batch steps of HF's model")
    ap.add_argument("--batch-size", type=int, default=None, help="sequences per micro-batch, both models (default: the preset's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny shape, few steps, no compile: a smoke test")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FIELD=V[,FIELD=V]",
                    help="also time ours with these config overrides (an ablation in the same run), e.g. "
                         "torch_loss=model.loss_backend=torch; repeatable")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    args.batch_size = args.batch_size or make_config("gpt2-124m").train.batch_size
    over = {"train.batch_size": str(args.batch_size)}
    if args.quick:
        over.update({"model.n_layer": "2", "model.n_embd": "128", "model.n_head": "2", "model.block_size": "128",
                     "train.compile": "false", "train.tokens_per_step": str(args.batch_size * 128 * 2)})
        args.steps, args.hf_steps = min(args.steps, 5), min(args.hf_steps, 3)
    shape = make_config("gpt2-124m", over).model.to_dict()
    dev = torch.device(device)
    peak = peak_flops(dev)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device_name} | torch {torch.__version__} | shape {shape} | micro-batch {args.batch_size}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        random_shards(work / "data", 20_000_000 if not args.quick else 200_000, 50257)
        ours = bench_ours(over, args.steps, device, work)
        variants = {}
        for spec in args.variant:
            name, _, sets = spec.partition("=")
            extra = dict(kv.split("=", 1) for kv in sets.split(",") if kv)
            print(f"variant {name}: {extra}", flush=True)
            variants[name] = bench_ours({**over, **extra}, max(4, args.steps // 2), device, work)
            variants[name]["overrides"] = extra
    from transformer import GPT, GPTConfig
    flops_tok = GPT(GPTConfig.from_dict(shape)).flops_per_token(shape["block_size"])
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    hf = bench_hf(shape, args.batch_size, args.hf_steps, device)
    for r in (ours, hf, *variants.values()):
        r["mfu"] = r["tokens_per_s"] * flops_tok / peak if peak else None
    for name, r in variants.items():
        print(f"  variant {name}: {r['tokens_per_s']:,.0f} tok/s = {r['tokens_per_s'] / ours['tokens_per_s']:.3f}x ours",
              flush=True)
    report = {"device": device_name, "torch": torch.__version__, "python": platform.python_version(), "shape": shape,
              "micro_batch": args.batch_size, "flops_per_token": flops_tok, "peak_flops_bf16": peak,
              "ours": ours, "hf": hf, "speedup_vs_hf": ours["tokens_per_s"] / hf["tokens_per_s"],
              "variants": variants,
              "goals": {"mfu": 0.45, "speedup_vs_hf": 3.0}, "quick": args.quick,
              "command": "python -m train.bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    mfu = lambda r: "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    print(f"ours {ours['tokens_per_s']:,.0f} tok/s (MFU {mfu(ours)}) | HF {hf['tokens_per_s']:,.0f} tok/s "
          f"(MFU {mfu(hf)}) | speedup {report['speedup_vs_hf']:.2f}x", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
