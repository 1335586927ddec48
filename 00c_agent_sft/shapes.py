"""Write answer shapes into an agent checkpoint's meta.json (data.answer_shapes).

    python -m agent_sft.shapes --checkpoint runs/default/agent [--traces 00c_agent_sft/data]

agent_sft.train stores them when it trains; this is for checkpoints trained before it did. The
shapes (model.reporting.answer_shapes) are how the training traces' answers report a tool result
("Paris.", "The answer is 6912.", "Sorry, I don't know that." after a miss): the server holds the
answers after tool results to them (03_model/README.md, copy rules).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from model.reporting import answer_shapes
from transformer.checkpoint import META, CheckpointError, read_json

from .train import HERE, read_jsonl


def write_shapes(checkpoint: Path, traces: Path) -> dict | None:
    """Add the answer shapes of traces/train.jsonl to checkpoint/meta.json (replaced atomically)."""
    meta = read_json(checkpoint / META, "meta")
    shapes = answer_shapes(read_jsonl(traces / "train.jsonl"))
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    meta["data"] = {**data, "answer_shapes": shapes}
    fd, tmp = tempfile.mkstemp(prefix=".meta.", dir=checkpoint)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, checkpoint / META)
    return shapes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent_sft.shapes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="agent checkpoint dir (runs/<run>/agent)")
    ap.add_argument("--traces", default=str(HERE / "data"), help="dir with the train.jsonl it was trained on")
    args = ap.parse_args(argv)
    try:
        shapes = write_shapes(Path(args.checkpoint), Path(args.traces))
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    if shapes is None:
        print(f"{args.checkpoint}/meta.json: no answer shapes (the answers after tool results say too many things)")
    else:
        kinds = [ss for tool in shapes.values() for ss in tool.values()]
        print(f"{args.checkpoint}/meta.json: {sum(map(len, kinds))} answer shapes for {len(kinds)} kinds of tool result")


if __name__ == "__main__":
    main(sys.argv[1:])
