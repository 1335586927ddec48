"""Serve a checkpoint over HTTP: `python -m model.serve --checkpoint runs/default/agent`.

Loads the checkpoint (safetensors, via transformer.checkpoint) and its tokenizer, builds the Engine
(one scheduler thread, continuous batching, CUDA graphs on a GPU) and runs the FastAPI app under
uvicorn. Binds 127.0.0.1 unless --host says otherwise. SIGTERM / Ctrl-C: uvicorn stops accepting
connections, waits for the responses in flight (streams run to their end), then the engine drains
and the process exits 0.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
import uvicorn

from transformer.checkpoint import CheckpointError, load_checkpoint
from transformer.tokenizer import Tokenizer, TokenizerError

from .api import create_app
from .decode import pick_device
from .engine import Engine
from .reporting import checkpoint_shapes


def tokenizer_dir(checkpoint: Path, meta: dict, flag: str | None) -> Path:
    """--tokenizer, else meta.json's "tokenizer" (as given, or relative to the checkpoint), else
    <checkpoint>/../tokenizer (the run layout of DESIGN.md)."""
    if flag:
        return Path(flag)
    if meta.get("tokenizer"):
        given = Path(meta["tokenizer"])
        for candidate in (given, checkpoint / given):
            if candidate.is_dir():
                return candidate
    return checkpoint.parent / "tokenizer"


def load(checkpoint: str, tokenizer: str | None, device: torch.device):
    path = Path(checkpoint)
    try:
        model, meta = load_checkpoint(path, device=device)
    except CheckpointError as e:
        raise SystemExit(f"cannot load checkpoint: {e}") from None
    if device.type == "cuda":
        model = model.to(torch.bfloat16)  # weights and (via new_kv_cache) the cache
    tok_dir = tokenizer_dir(path, meta, tokenizer)
    try:
        tok = Tokenizer.load(str(tok_dir))
    except TokenizerError as e:
        raise SystemExit(f"cannot load tokenizer ({e}); pass --tokenizer DIR") from None
    if tok.vocab_size > model.config.vocab_size:
        raise SystemExit(f"tokenizer {tok_dir} has {tok.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size}: wrong tokenizer for this checkpoint?")
    try:
        checkpoint_shapes(meta)
    except ValueError as e:
        raise SystemExit(f"cannot load checkpoint {path}: {e}") from None
    return model, tok, meta


class Server(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM after its graceful shutdown, which ends the process with
    a signal status. A drained server has done its job: exit 0 instead."""

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if hasattr(self, "_captured_signals"):
            self._captured_signals.clear()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint dir (config.json, model.safetensors, meta.json)")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir (default: meta.json's, else <checkpoint>/../tokenizer)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--max-batch", type=int, default=8, help="slots: sequences decoded together (KV cache rows)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting for a slot before 429")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    p.add_argument("--model-name", default=None, help="id reported by /v1/models (default: checkpoint dir name)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="eager decode on a GPU (for debugging)")
    p.add_argument("--no-grammar", action="store_true",
                   help="chat turns decode unconstrained (default: only tokens the protocol allows next, grammar.py)")
    p.add_argument("--no-copy-rules", action="store_true",
                   help="chat actions and answers may write numbers and words they did not copy (copying.py)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (tiny models: 1 is fastest)")
    p.add_argument("--step-delay", type=float, default=0.0,
                   help="sleep this many seconds after each decode step: a slow device, for demos and tests")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.max_batch < 1 or args.max_queue < 0:
        p.error("--max-batch must be >= 1 and --max-queue >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    device = pick_device(args.device)
    model, tok, meta = load(args.checkpoint, args.tokenizer, device)
    engine = Engine(model, tok, max_batch=args.max_batch, max_queue=args.max_queue,
                    cuda_graphs=False if args.no_cuda_graphs else None, step_delay=args.step_delay,
                    grammar=not args.no_grammar, copy_rules=not args.no_copy_rules)
    name = args.model_name or Path(args.checkpoint).resolve().name
    app = create_app(engine, tok, name, max_body_bytes=args.max_body_bytes, warmup=True, answer_shapes=checkpoint_shapes(meta))
    logging.getLogger("model").info("serving %s (%s, %.1fM params) on %s, pid %d", name, meta.get("stage", "?"),
                                    model.num_params() / 1e6, device, os.getpid())
    Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                          timeout_graceful_shutdown=None)).run()


if __name__ == "__main__":
    main()
