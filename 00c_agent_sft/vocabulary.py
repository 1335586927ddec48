"""Write a report vocabulary into an agent checkpoint's meta.json (data.report_vocabulary).

    python -m agent_sft.vocabulary --checkpoint runs/default/agent [--traces 00c_agent_sft/data]

agent_sft.train stores it when it trains; this is for checkpoints trained before it did. The
vocabulary (model.reporting.report_vocabulary) is what the training traces' answers after tool results
write besides the results: the server holds such answers to it (03_model/README.md, copy rules).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from model.reporting import report_vocabulary
from transformer.checkpoint import META, CheckpointError, read_json

from .train import HERE, read_jsonl


def write_vocabulary(checkpoint: Path, traces: Path) -> dict:
    """Add the vocabulary of traces/train.jsonl to checkpoint/meta.json (replaced atomically)."""
    meta = read_json(checkpoint / META, "meta")
    vocabulary = report_vocabulary(read_jsonl(traces / "train.jsonl"))
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    meta["data"] = {**data, "report_vocabulary": vocabulary}
    fd, tmp = tempfile.mkstemp(prefix=".meta.", dir=checkpoint)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, checkpoint / META)
    return vocabulary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent_sft.vocabulary", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="agent checkpoint dir (runs/<run>/agent)")
    ap.add_argument("--traces", default=str(HERE / "data"), help="dir with the train.jsonl it was trained on")
    args = ap.parse_args(argv)
    try:
        vocabulary = write_vocabulary(Path(args.checkpoint), Path(args.traces))
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.checkpoint}/meta.json: report vocabulary of {len(vocabulary['words'])} words, "
          f"{len(vocabulary['pairs'])} pairs")


if __name__ == "__main__":
    main(sys.argv[1:])
