"""DDP scaling: the same training run on 1 process and on N (torchrun), same global batch.

    python -m train.bench_ddp --nproc 2 --out reports/pretrain_ddp_h200x2.json   # N GPUs, NCCL
    python -m train.bench_ddp --quick --nproc 2                                   # CPU, gloo: code path only

Each run is `torchrun -m train.pretrain` on random tokens (train.bench's shards) with the gpt2-124m
preset (bf16, compiled), so the global batch (0.5M tokens/step) is the same and only the work per
process shrinks. Throughput is the median of the logged steps after the first two (compilation).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .bench import random_shards
from .metrics import read_rows


def run(nproc: int, work: Path, preset: str, steps: int, extra: list[str]) -> dict:
    name = f"ddp{nproc}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "train.pretrain", "--", "--run", name, "--runs-dir", str(work / "runs"), "--preset", preset,
           f"--train.data={work / 'data'}", f"--train.max_steps={steps}", "--train.eval_iters=0",
           "--train.log_interval=1", "--train.warmup_steps=2", "--train.sample_interval=0", *extra]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    rows = [r for r in read_rows(work / "runs" / name / "base_log.jsonl") if "tokens_per_s" in r]
    timed = rows[2:] if len(rows) > 3 else rows[-1:]
    return {"nproc": nproc, "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
            "mfu": statistics.median(r["mfu"] for r in timed) if timed[0].get("mfu") is not None else None,
            "steps_timed": len(timed), "final_loss": rows[-1]["loss"], "wall_s": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.bench_ddp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2, help="processes (GPUs) of the DDP run")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    ap.add_argument("--out", default=None, help="JSON report path")
    ap.add_argument("--quick", action="store_true", help="tiny model on the CPU (gloo): checks the code path")
    args = ap.parse_args(argv)
    preset, extra, vocab = "gpt2-124m", [], 50304
    if args.quick:
        preset, vocab = "cpu", 512
        extra = ["--device=cpu", "--model.vocab_size=512", "--model.block_size=32", "--model.n_layer=1",
                 "--model.n_embd=32", "--model.n_head=2", "--train.batch_size=4", "--train.tokens_per_step=512"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        random_shards(work / "data", 4_000_000 if not args.quick else 100_000, vocab)
        one = run(1, work, preset, args.steps, extra)
        many = run(args.nproc, work, preset, args.steps, extra)
    report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.quick else "cpu",
              "torch": torch.__version__, "preset": preset, "one": one, "ddp": many,
              "scaling": many["tokens_per_s"] / one["tokens_per_s"], "goal_scaling": 1.8,
              "command": "python -m train.bench_ddp " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps({k: report[k] for k in ("device", "scaling")}), flush=True)
    print(f"1 process: {one['tokens_per_s']:,.0f} tok/s; {args.nproc} processes: {many['tokens_per_s']:,.0f} tok/s "
          f"-> {report['scaling']:.2f}x", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
