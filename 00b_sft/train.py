"""Supervised fine-tuning on the hand-written chat data: runs/<run>/base -> runs/<run>/sft.

    python -m sft.train                                  # Path A: our pretrained base, CPU/GPU preset by device
    python -m sft.train --preset cpu --max_steps=50      # any SFTConfig field: --field=value
    python -m sft.train --run hf --init-from-hf DIR      # Path B: a Hugging Face GPT-2 directory
    python -m sft.train --resume                         # continue an interrupted run

`run_stage` is the whole command line; agent_sft.train calls it with its own data and presets, so
both stages go through the same code and the same trainer (sft.trainer.train).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from transformer.checkpoint import CheckpointError, load_checkpoint
from transformer.tokenizer import Tokenizer, TokenizerError

from .data import DataError, load_conversations, split
from .trainer import ROOT, SFTConfig, train

# Presets: the CPU one must finish (together with agent SFT's) within 5 minutes on 2 cores. One
# thread, like pretraining: as fast as two on a quiet machine for these matrix sizes, and 8x faster
# when the other core is busy (OpenMP threads spin on a contended core).
PRESETS = {
    "cpu": dict(max_steps=200, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=15, eval_interval=50, max_time=25,
                threads=1),
    "gpu": dict(max_steps=600, batch_size=32, lr=3e-4, min_lr=3e-5, warmup_steps=30, eval_interval=100),
}

# loads the stage's data: (train conversations, val conversations, description for meta.json)
DataFn = Callable[[argparse.Namespace], tuple[list[dict], list[dict], dict]]


def parse_overrides(rest: list[str]) -> dict:
    """['--lr=1e-3', '--max_steps=50'] -> {'lr': 0.001, 'max_steps': 50}, typed like SFTConfig."""
    types, out = SFTConfig.field_types(), {}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"unrecognised argument {arg!r} (config overrides are --field=value)")
        key, value = arg[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in types:
            raise SystemExit(f"unknown config field {key!r}; fields: {', '.join(sorted(types))}")
        try:
            out[key] = types[key](value) if types[key] is not bool else value.lower() in ("1", "true", "yes")
        except ValueError:
            raise SystemExit(f"--{key}: expected {types[key].__name__}, got {value!r}") from None
    return out


def chat_data(args: argparse.Namespace) -> tuple[list[dict], list[dict], dict]:
    convs = load_conversations(args.data)
    tr, va = split(convs)
    return tr, va, {"source": str(args.data or "00b_sft/data/conversations.jsonl"), "train": len(tr), "val": len(va)}


def load_init(stage_from: str, run_dir: Path, hf_dir: str | None):
    """-> (model, tokenizer, tokenizer dir, init description)."""
    if hf_dir:
        from .hf_init import init_from_hf
        model, tok = init_from_hf(hf_dir)
        tok_dir = run_dir / "tokenizer"
        if (tok_dir / "tokenizer.json").is_file():
            old = Tokenizer.load(str(tok_dir))
            if old.mergeable_ranks != tok.mergeable_ranks or old.special_tokens != tok.special_tokens:
                raise SystemExit(f"{tok_dir} holds a different tokenizer; use a fresh --run for --init-from-hf")
        else:
            tok.save(str(tok_dir))
        return model, tok, tok_dir, {"hf": str(Path(hf_dir).resolve())}
    src = run_dir / stage_from
    model, meta = load_checkpoint(src)
    tok_dir = Path(meta.get("tokenizer") or run_dir / "tokenizer")
    if not tok_dir.is_absolute() and not tok_dir.exists():
        tok_dir = ROOT / tok_dir
    return model, Tokenizer.load(str(tok_dir)), tok_dir, {"checkpoint": str(src), "step": meta.get("step")}


def write_report(path: Path, stage: str, summary: dict) -> None:
    """Merge this stage's summary into the report JSON (one file holds both SFT stages)."""
    report = json.loads(path.read_text()) if path.is_file() else {}
    report[stage] = summary
    report["total_wall_s"] = round(sum(v["wall_s"] for k, v in report.items() if isinstance(v, dict)), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def run_stage(argv: list[str] | None, *, stage: str, stage_from: str, presets: dict, data_fn: DataFn,
              prog: str, description: str, allow_hf: bool = False,
              add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog=prog, description=description, epilog="Any SFTConfig field can be "
                                 f"overridden as --field=value: {', '.join(SFTConfig.field_types())}.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="run name: reads and writes runs/<run>/")
    ap.add_argument("--preset", choices=sorted(presets), default=None,
                    help="training preset (default: gpu when CUDA is available, else cpu)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--resume", action="store_true", help=f"continue an interrupted run from runs/<run>/{stage}.partial")
    if allow_hf:
        ap.add_argument("--init-from-hf", metavar="DIR", default=None,
                        help="start from a Hugging Face GPT-2 directory (weights + tokenizer) instead of base/")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"), help="where runs live (default: ./runs)")
    ap.add_argument("--report", default=None, metavar="JSON",
                    help="merge this stage's summary into a report JSON (e.g. reports/sft_cpu.json); "
                         "default: none, so ordinary runs never touch the committed reports")
    if add_args:
        add_args(ap)
    args, rest = ap.parse_known_args(argv)
    preset = args.preset or ("gpu" if torch.cuda.is_available() else "cpu")
    cfg = SFTConfig(**{**presets[preset], **parse_overrides(rest), "device": args.device})
    run_dir = Path(args.runs_dir) / args.run
    try:
        model, tok, tok_dir, init = load_init(stage_from, run_dir, getattr(args, "init_from_hf", None))
        train_convs, val_convs, data_meta = data_fn(args)
    except (CheckpointError, TokenizerError, DataError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{stage}: {model.num_params() / 1e6:.2f}M params from {init}, {len(train_convs)} train / "
          f"{len(val_convs)} val conversations, preset {preset}: {cfg}")
    logs = run_dir / "logs"
    report = Path(args.report) if args.report and args.report != "none" else None
    plot = (report.parent if report else logs) / f"sft_loss_{stage}_{preset}.png"
    meta = {"stage": stage, "init": init, "data": data_meta, "tokenizer": str(tok_dir), "preset": preset}
    t0 = time.time()
    summary = train(model, tok, train_convs, val_convs, cfg, run_dir / stage, meta,
                    log_path=logs / f"{stage}.jsonl", plot_path=plot, resume=args.resume)
    summary.update(preset=preset, wall_s=round(time.time() - t0, 1), torch_threads=torch.get_num_threads(),
                   params=model.num_params(), plot=str(plot.relative_to(ROOT) if plot.is_relative_to(ROOT) else plot))
    print(json.dumps(summary, indent=2))
    if report and summary["complete"]:
        write_report(report, stage, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    run_stage(argv, stage="sft", stage_from="base", presets=PRESETS, data_fn=chat_data, prog="python -m sft.train",
              description=__doc__, allow_hf=True,
              add_args=lambda ap: ap.add_argument("--data", default=None, help="chat JSONL (default: the bundled set)"))


if __name__ == "__main__":
    main(sys.argv[1:])
