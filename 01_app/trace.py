"""`python -m app.trace "What is 1234 plus 5678?"`: one query's path through every layer, printed.

The page would POST the question to 01_app, whose agent loop (02_agent) sends it to the inference
server (03_model), which renders it with the token protocol, encodes it with our BPE, runs the GPT
(04_transformer) whose attention is a kernel (PyTorch SDPA or 05_gpu's Triton flash attention), and
streams tokens back; an action goes to a tool, its result comes back as an observation, and the
answer streams to the page. Here all of it runs in one process, greedily, with each hop printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from agent.tools import run_tool
from transformer.chat import parse_action, render_prompt
from transformer.checkpoint import load_checkpoint
from transformer.tokenizer import StreamDecoder, Tokenizer


def section(title: str) -> None:
    print(f"\n\033[1m== {title} ==\033[0m")


def show_tokens(tok: Tokenizer, ids: list[int], limit: int = 48) -> None:
    pieces = [tok.id_to_bytes(i).decode("utf-8", errors="backslashreplace") for i in ids[:limit]]
    print(f"{len(ids)} tokens: {ids[:limit]}{' ...' if len(ids) > limit else ''}")
    print("pieces: " + " | ".join(repr(p)[1:-1] for p in pieces) + (" ..." if len(ids) > limit else ""))


def trace_forward(model, ids: torch.Tensor) -> None:
    """Print the tensor shapes of the first forward pass and the kernels it ran."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=name: shapes.append((n, tuple(i[0].shape), tuple(o.shape))))
             for name, m in model.named_modules()
             if name in ("transformer.wte", "transformer.wpe", "transformer.h.0.attn.c_attn",
                         "transformer.h.0.attn", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp",
                         "transformer.h.0", "transformer.ln_f", "lm_head")]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ids.is_cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        model(ids)
    for h in hooks:
        h.remove()
    cfg = model.config
    for name, shape_in, shape_out in shapes:
        print(f"  {name:32s} {str(shape_in):18s} -> {shape_out}")
    print(f"  (blocks 1..{cfg.n_layer - 1} repeat block 0; the head is tied to wte)")
    ops = {e.key for e in prof.key_averages()}
    attn = sorted(k for k in ops if any(w in k.lower() for w in ("attention", "flash", "softmax", "triton")))
    mm = sorted(k for k in ops if k in ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"))
    print(f"attention backend: {cfg.attn_backend!r}; attention kernels run: {attn}")
    print(f"matmul ops run: {mm}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("question", nargs="?", default="What is 1234 plus 5678?")
    ap.add_argument("--checkpoint", default="runs/default/agent", help="checkpoint directory")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: from the checkpoint's meta)")
    ap.add_argument("--attn-backend", default=None, help="override: sdpa | manual | triton")
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--max-steps", type=int, default=4, help="tool calls before giving up")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {"attn_backend": args.attn_backend} if args.attn_backend else {}
    model, meta = load_checkpoint(args.checkpoint, device=device, **overrides)
    tok_dir = args.tokenizer or meta.get("tokenizer") or str(Path(args.checkpoint).parent / "tokenizer")
    tok = Tokenizer.load(tok_dir)
    S = tok.special_tokens
    messages = [{"role": "user", "content": args.question}]

    section("browser -> 01_app")
    print("POST /chat " + json.dumps({"messages": messages}))
    section("01_app -> 02_agent -> 03_model")
    print("POST /v1/chat/completions " + json.dumps({"messages": messages, "stream": True, "temperature": 0,
                                                     "tools": ["calc", "lookup"]}))
    section("03_model: render with the token protocol, encode with our BPE (04_transformer)")
    ids = render_prompt(messages, tok)
    print("prompt: " + tok.decode(ids))
    show_tokens(tok, ids)
    cfg = model.config
    section(f"04_transformer: GPT {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, "
            f"{model.num_params() / 1e6:.2f}M params on {device}")
    trace_forward(model, torch.tensor([ids], device=device))

    section("03_model: greedy decoding with the KV cache, streamed")
    cache = model.new_kv_cache(1)
    pending = ids  # tokens the model has not seen yet
    out = StreamDecoder(tok)
    field, action, steps = None, "", 0
    names = {v: k for k, v in S.items()}
    for _ in range(args.max_tokens):
        with torch.no_grad():
            logits, _ = model(torch.tensor([pending], device=device), kv_cache=cache)
        nxt = int(logits[0, -1].argmax())
        pending = [nxt]
        if nxt in names:  # a protocol token switches what the following text is
            out.flush()
            name = names[nxt]
            print(f"\n  [{name}]", end=" ", flush=True)
            if name == "<|observation|>":
                call = parse_action(action)
                result = run_tool(*call) if call else f"error: cannot parse action {action!r}"
                print(f"\n  02_agent runs the tool: {action} -> {result!r}", flush=True)
                steps += 1
                pending = [nxt] + tok.encode(result)
                if steps >= args.max_steps:
                    print("\n  (step limit reached)")
                    break
            if name in ("<|end|>", "<|endoftext|>"):
                break
            field, action = name, ""
            continue
        text = out.push(nxt)
        if field == "<|action|>":
            action += text
        print(text, end="", flush=True)
    print("\n")
    print(f"KV cache: {cache.nbytes / 1e6:.2f} MB preallocated, {int(cache.lengths[0])} positions used")


if __name__ == "__main__":
    main()
