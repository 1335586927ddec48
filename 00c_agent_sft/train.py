"""Agent SFT: runs/<run>/sft -> runs/<run>/agent, on the generated tool-use traces.

    python -m agent_sft.train                       # preset by device (cpu | gpu)
    python -m agent_sft.train --preset cpu --max_steps=200
    python -m agent_sft.train --traces runs/big/traces   # e.g. a larger set from agent_sft.generate --n-train

The same command line and trainer as `sft.train` (sft.train.run_stage -> sft.trainer.train), with
other data and presets. Some of the hand-written chat data is mixed in so the model keeps its
small talk; chat conversations that answer arithmetic or facts WITHOUT a tool are left out, since
here those questions must go through calc / lookup.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from model.reporting import answer_shapes
from sft.data import load_conversations, split
from sft.train import run_stage

HERE = Path(__file__).resolve().parent

PRESETS = {
    # 2 CPU cores: together with sft.train's cpu preset within 5 minutes
    # small batches: a tiny model learns copying per update more than per token (measured: B=8 beat
    # B=16 and B=32 at equal time); max_time keeps the pair of SFT stages within 5 minutes
    "cpu": dict(max_steps=8000, batch_size=8, lr=4e-3, min_lr=4e-4, warmup_steps=100, eval_interval=1000,
                eval_batches=16, max_time=250, threads=1),
    "gpu": dict(max_steps=3000, batch_size=64, lr=5e-4, min_lr=5e-5, warmup_steps=100, eval_interval=250,
                eval_batches=20),
}
CHAT_CATEGORIES = {"smalltalk", "identity", "refusal", "multiturn"}
# a chat question that the agent must answer with a tool (the chat set answers it from memory)
TOOLISH = re.compile(r"\d|\b(plus|minus|times|divided|sum|product|multipl|subtract|add|capital|wrote|author|"
                     r"symbol|squared|how many|how much|what is the|what's the|who (invented|painted|discovered))",
                     re.IGNORECASE)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run `python -m agent_sft.generate` first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def chat_mix(convs: list[dict]) -> list[dict]:
    return [c for c in convs if c.get("category") in CHAT_CATEGORIES and
            not any(TOOLISH.search(m["content"]) for m in c["messages"] if m["role"] == "user")]


def agent_data(args: argparse.Namespace) -> tuple[list[dict], list[dict], dict]:
    traces = Path(args.traces)
    train, val = read_jsonl(traces / "train.jsonl"), read_jsonl(traces / "val.jsonl")
    chat_train, chat_val = (chat_mix(x) for x in split(load_conversations()))
    meta = {"traces": str(traces), "train_traces": len(train), "val_traces": len(val),
            "chat_train": len(chat_train) * args.chat_repeat, "chat_val": len(chat_val),
            # how the answers it learns report tool results; the server holds answers to these shapes
            "answer_shapes": answer_shapes(train)}
    return train + chat_train * args.chat_repeat, val + chat_val, meta


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--traces", default=str(HERE / "data"), help="dir with train.jsonl / val.jsonl traces")
    ap.add_argument("--chat-repeat", type=int, default=2, help="copies of the tool-free chat data mixed in")


def main(argv: list[str] | None = None) -> None:
    run_stage(argv, stage="agent", stage_from="sft", presets=PRESETS, data_fn=agent_data,
              prog="python -m agent_sft.train", description=__doc__, add_args=add_args)


if __name__ == "__main__":
    main(sys.argv[1:])
