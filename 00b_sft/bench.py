"""How much faster is an SFT step when the vocabulary head runs only where the loss mask is 1?

    python -m sft.bench                                   # cpu preset model, agent traces, 1 thread
    python -m sft.bench --out reports/sft_bench_cpu.json --steps 100 --rounds 5

Times the same training step two ways on the same batches: the full forward (`model(x, y)`:
logits at every position, (B, T, V)) and `GPT.learned_loss` (logits only where the target counts,
(N, V)); each step includes backward, gradient clipping and AdamW, as in sft.trainer. The two
variants alternate round by round (a noisy machine slows both alike) and the ratio of their median
round times is the result. The model is freshly initialised with the preset's shape: speed does not
depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from train.config import PRESETS, padded_vocab
from transformer import GPT, IGNORE_INDEX, GPTConfig
from transformer.bench_tokenizer import machine
from transformer.tokenizer import Tokenizer

from .trainer import ROOT, Batches, encode

TRACES = ROOT / "00c_agent_sft" / "data" / "train.jsonl"  # a data file, not an import: sft is the lower layer


def time_steps(model: GPT, batches: Batches, steps: int, learned: bool) -> float:
    """Seconds for `steps` optimizer steps on batches 0..steps-1."""
    opt = model.configure_optimizer(0.0, 1e-4, (0.9, 0.95), "cpu")
    t0 = time.perf_counter()
    for s in range(steps):
        x, y = batches.get(s)
        loss = model.learned_loss(x, y) if learned else model(x, y)[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - t0


def bench(tok: Tokenizer, convs: list[dict], preset: str = "cpu", steps: int = 100, rounds: int = 5,
          batch_size: int = 8) -> dict:
    shape = {**PRESETS[preset]["model"], "vocab_size": padded_vocab(tok.vocab_size)}
    torch.manual_seed(0)
    model = GPT(GPTConfig(**shape)).train()
    examples, _ = encode(convs, tok, model.config.block_size)
    batches = Batches(examples, batch_size, seed=0, pad_id=tok.special_tokens["<|endoftext|>"])
    positions = learned = 0
    for s in range(steps):
        _, y = batches.get(s)
        positions, learned = positions + y.numel(), learned + int((y != IGNORE_INDEX).sum())
    time_steps(model, batches, 10, True)  # warm-up
    times: dict[str, list[float]] = {"full_logits": [], "learned_loss": []}
    for _ in range(rounds):
        times["full_logits"].append(time_steps(model, batches, steps, False))
        times["learned_loss"].append(time_steps(model, batches, steps, True))
    ms = {k: round(1000 * statistics.median(v) / steps, 2) for k, v in times.items()}
    return {"preset": preset, "model": shape, "params": model.num_params(), "batch_size": batch_size,
            "steps_per_round": steps, "rounds": rounds, "torch_threads": torch.get_num_threads(),
            "learned_share_of_positions": round(learned / positions, 3), "ms_per_step": ms,
            "speedup": round(ms["full_logits"] / ms["learned_loss"], 3),
            "round_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "machine": {**machine(), "torch": torch.__version__}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sft.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="runs/cpu/tokenizer", help="tokenizer dir (from `train.prepare`)")
    ap.add_argument("--data", default=str(TRACES), help="conversations JSONL (default: the agent traces)")
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="model shape (train.config)")
    ap.add_argument("--steps", type=int, default=100, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per variant, alternating")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the cpu presets use 1)")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    if not (Path(args.tokenizer) / "tokenizer.json").is_file():
        raise SystemExit(f"error: no tokenizer in {args.tokenizer}; run `python -m train.prepare --run cpu` first")
    torch.set_num_threads(args.threads)
    with open(args.data, encoding="utf-8") as f:
        convs = [json.loads(line) for line, _ in zip(f, range(4000))]
    r = bench(Tokenizer.load(args.tokenizer), convs, args.preset, args.steps, args.rounds)
    print(json.dumps({k: r[k] for k in ("ms_per_step", "speedup", "learned_share_of_positions")}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
