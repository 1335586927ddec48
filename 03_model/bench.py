"""Serving benchmark (not a test): `python -m model.bench [--device auto] [--out reports]`.

Random weights of a fixed shape (gpt2-124m on a GPU, the cpu preset on a CPU), measured through
the Engine in-process with the same asyncio delivery path as the HTTP server (no HTTP/JSON/SSE):
- prefill ms for one prompt (512 tokens, or half the window when that is smaller);
- decode ms/token at batch 1 (the raw step, and through the engine as a client sees it: the time
  from a stream's first token to its last over the tokens in between);
- tokens/s and p50/p99 inter-token latency at 1, 8, 32, 64 concurrent streams (greedy, no stop);
  with several steps per launch (Engine decode_steps) tokens arrive in groups, so the p50 gap is
  within a group and the p99 gap between groups;
- the same weights in Hugging Face transformers' generate() (greedy, use_cache=True): ms/token at
  batch 1 and tokens/s at batch 32.
The engine overlaps its host work with the next decode step (--no-overlap turns that off) and, on a
GPU, decodes on 05_gpu's fused kernels (GPTConfig.decode_kernels), several steps per launch. On a GPU
three ablations run in the same run (--no-baseline skips them): "one_step" (one step per launch),
"torch_kernels" (also PyTorch ops for the one-token step) and "baseline" (also no overlap), and a profile of one batch-1 step of each (taken last: the profiler slows
down later launches) counts its kernels. Writes <out>/serving_<device>.json and .md.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from transformer import GPT, GPTConfig
from transformer.tokenizer import Tokenizer

from .decode import pick_device
from .engine import Done, Engine, Request
from .sampling import SamplingParams

PRESETS = {"gpt2-124m": GPTConfig(block_size=1024, vocab_size=50304, n_layer=12, n_head=12, n_embd=768),
           "cpu": GPTConfig(block_size=256, vocab_size=4096, n_layer=4, n_head=4, n_embd=128)}
GREEDY = SamplingParams(temperature=0.0)
ABLATIONS = ("one_step", "torch_kernels", "baseline")


def synthetic_tokenizer(vocab_size: int) -> Tokenizer:
    """A tokenizer covering exactly vocab_size ids (bytes, then byte pairs, then the specials), so
    that every id a random model emits decodes: detokenization costs what it costs in production."""
    ranks = {bytes([i]): i for i in range(256)}
    pairs = (bytes(p) for p in itertools.product(range(256), repeat=2))
    for i, b in zip(range(256, vocab_size - 8), pairs):
        ranks[b] = i
    return Tokenizer(ranks, "gpt2")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, device, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def run_streams(engine: Engine, n: int, prompt_len: int, max_tokens: int, vocab: int) -> dict:
    loop = asyncio.get_running_loop()
    g = torch.Generator().manual_seed(n)
    reqs = [Request(torch.randint(0, vocab, (prompt_len,), generator=g).tolist(), max_tokens, GREEDY,
                    loop=loop) for _ in range(n)]

    async def consume(req: Request) -> tuple[list[float], int]:
        stamps, tokens = [], 0
        while True:
            ev = await req.events.get()
            if isinstance(ev, Done):
                return stamps, ev.completion_tokens
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    for r in reqs:
        engine.submit(r)
    results = await asyncio.gather(*(consume(r) for r in reqs))
    wall = time.perf_counter() - t0
    gaps = [(b - a) * 1e3 for stamps, _ in results for a, b in zip(stamps, stamps[1:])]
    total = sum(t for _, t in results)
    per_token = [(s[-1] - s[0]) * 1e3 / (len(s) - 1) for s, _ in results if len(s) > 1]
    return {"streams": n, "completion_tokens": total, "wall_s": round(wall, 3),
            "tokens_per_s": round(total / wall, 1),
            "decode_ms_per_token": round(statistics.mean(per_token), 4) if per_token else None,
            "itl_p50_ms": round(pct(gaps, 0.5), 3),
            "itl_p99_ms": round(pct(gaps, 0.99), 3),
            "ttft_p50_ms": round(pct([(s[0] - t0) * 1e3 for s, _ in results], 0.5), 2)}


def bench_hf(model: GPT, device: torch.device, dtype, prompt_len: int, n_tokens: int) -> dict:
    from transformers import GPT2LMHeadModel  # the comparison only; the server never imports it
    from transformer.hf import export_hf_gpt2
    with tempfile.TemporaryDirectory() as d:
        export_hf_gpt2(model, d)
        hf = GPT2LMHeadModel.from_pretrained(d, torch_dtype=dtype).to(device).eval()
    V = model.config.vocab_size

    def gen(batch: int, new: int):
        ids = torch.randint(0, V, (batch, prompt_len), device=device)
        with torch.no_grad():
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                        do_sample=False, use_cache=True, pad_token_id=0)
    short, long = max(2, n_tokens // 4), n_tokens
    t_short = median_ms(lambda: gen(1, short), device, reps=3, warmup=1)
    t_long = median_ms(lambda: gen(1, long), device, reps=3, warmup=0)
    t32 = median_ms(lambda: gen(32, long), device, reps=2, warmup=1)
    import transformers
    return {"transformers": transformers.__version__, "attn_implementation": hf.config._attn_implementation,
            "b1_ms_per_token": round((t_long - t_short) / (long - short), 3),
            "b32_tokens_per_s": round(32 * long / (t32 / 1e3), 1)}


def bench_engine(model: GPT, tok: Tokenizer, cfg: GPTConfig, device: torch.device, levels: list[int],
                 n_tokens: int, overlap: bool, kernels: str, decode_steps: int | None, grammar: bool = True):
    """Warm-up, raw decode steps and the concurrency sweep of one engine configuration -> the results
    and its raw-step function (for the profile at the end)."""
    model.config.decode_kernels = kernels  # read when the decoder's graphs are captured
    engine = Engine(model, tok, max_batch=max(levels), overlap=overlap, decode_steps=decode_steps, grammar=grammar)
    t = time.perf_counter()
    engine.start(warmup=True)  # captures every CUDA graph bucket up front on a GPU
    dec = engine.decoder
    fused = model.decode_kernels_on(device)
    k = engine.decode_steps
    res = {"decoder": {"cuda_graphs": hasattr(dec, "graphs"), "overlap": overlap, "argmax_in_step": True,
                       "decode_kernels": "triton (05_gpu)" if fused else "torch", "steps_per_launch": k,
                       "protocol_grammar": engine.grammar is not None},
           "graph_warmup_s": round(time.perf_counter() - t, 2)}

    def raw_step(b: int):  # one decode step of b rows through the engine's decoder, ids to the host
        engine.cache.lengths[:b] = 32
        with torch.no_grad():
            dec.step([1] * b)[1].tolist()
    # what compaction buys: a step over the n active rows vs one over all max_batch rows (padding)
    res["decode_step_ms_by_batch"] = {b: round(median_ms(lambda: raw_step(b), device, reps=30), 4)
                                      for b in sorted({1, min(8, max(levels)), max(levels)})}
    res["decode_step_b1_ms"] = res["decode_step_ms_by_batch"][1]

    def chained(n: int = 64):  # n batch-1 steps, each fed by the last on the device, one sync at the end
        engine.cache.lengths[:1] = 32
        with torch.no_grad():
            dec.step([1])
            for _ in range(n - 1):
                dec.step(None)
            dec.step(None)[1].tolist()
    # the device-bound floor of a step (no host round trip): what overlap lets the engine approach
    res["decode_step_b1_chained_ms"] = round(median_ms(chained, device, reps=5) / 65, 4)

    def chained_groups(n: int = 16):  # the same with k steps per launch: n launches, n * k steps
        engine.cache.lengths[:1] = 32
        with torch.no_grad():
            dec.step([1], steps=k)
            for _ in range(n - 1):
                dec.step(None, steps=k)
            dec.step(None, steps=k)[1].tolist()
    if k > 1:
        res["decode_step_b1_chained_groups_ms"] = round(median_ms(chained_groups, device, reps=5) / (17 * k), 4)
    engine.cache.lengths[:2] = 32
    if engine.max_batch > 1:  # compaction moves a row only when there are two
        res["row_move_ms"] = round(median_ms(lambda: engine._move_row(1, 0), device, reps=20), 4)
    engine.cache.reset()

    async def streams():
        await run_streams(engine, min(8, max(levels)), 32, 8, cfg.vocab_size)  # warm up
        return [await run_streams(engine, n, 32, n_tokens, cfg.vocab_size) for n in levels]
    res["concurrency"] = asyncio.run(streams())
    res["engine_b1_ms_per_token"] = next((r["decode_ms_per_token"] for r in res["concurrency"] if r["streams"] == 1),
                                         None)
    res["ran_ahead_steps"] = engine.health()["stats"]["ran_ahead"]
    engine.stop()  # the scheduler thread ends; the decoder stays usable for raw steps
    return res, raw_step


def profile_step(fn) -> dict:
    """GPU kernels of one call of fn (a replayed decode step): count, summed time, the top five."""
    from torch.profiler import ProfilerActivity, profile
    try:
        fn()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        by_name: dict[str, float] = {}
        for e in kernels:
            by_name[e.name[:80]] = by_name.get(e.name[:80], 0.0) + e.device_time
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:5]
        # under programmatic dependent launch kernels overlap (one waits while the one before runs),
        # so the sum of their durations overstates the step; the span from first start to last end is
        # what the step takes
        span = max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)
        return {"gpu_ops": len(kernels), "gpu_time_us": round(sum(by_name.values()), 1),
                "gpu_span_us": round(span, 1), "top_us": {k: round(v, 1) for k, v in top}}
    except Exception as e:  # the profile is a diagnosis; never lose the benchmark over it
        return {"error": f"{type(e).__name__}: {e}"[:300]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="reports")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="model shape (default: gpt2-124m on a GPU, cpu on a CPU)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens per stream (default 256 GPU / 64 CPU)")
    p.add_argument("--streams", default="1,8,32,64", help="concurrency levels")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-overlap", action="store_true", help="no launching step t+1 before reading step t")
    p.add_argument("--no-baseline", action="store_true",
                   help="GPU: skip the ablations (one_step, torch_kernels, baseline)")
    p.add_argument("--no-grammar", action="store_true",
                   help="engine without the protocol grammar tables (the decode step then skips the mask)")
    p.add_argument("--decode-steps", type=int, default=None,
                   help="greedy decode steps per launch (default: the Engine's, 4 with CUDA graphs)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    preset = args.preset or ("gpt2-124m" if gpu else "cpu")
    cfg = PRESETS[preset]
    dtype = torch.bfloat16 if gpu else torch.float32
    n_tokens = args.tokens or (256 if gpu else 64)
    levels = [int(x) for x in args.streams.split(",")]
    torch.manual_seed(0)
    model = GPT(cfg).to(device=device, dtype=dtype).eval()
    tok = synthetic_tokenizer(cfg.vocab_size)
    name = torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu"
    report = {"device": name, "preset": preset, "config": cfg.to_dict(), "dtype": str(dtype),
              "params_M": round(model.num_params() / 1e6, 1), "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "method": "in-process through the Engine (scheduler thread + asyncio delivery), no HTTP"}

    P = min(512, cfg.block_size // 2)
    prompt = torch.randint(0, cfg.vocab_size, (1, P), device=device)
    cache = model.new_kv_cache(1)

    def prefill():
        cache.reset()
        with torch.no_grad():
            model(prompt, kv_cache=cache)
    report["prefill"] = {"prompt_tokens": P, "ms": round(median_ms(prefill, device, reps=10), 3)}

    variants = ([("baseline", False, "torch", 1), ("torch_kernels", True, "torch", 1), ("one_step", True, "auto", 1)]
                if gpu and not args.no_baseline else [])
    variants.append(("main", not args.no_overlap, "auto", args.decode_steps))
    steppers = {}
    for label, overlap, kernels, steps in variants:
        res, steppers[label] = bench_engine(model, tok, cfg, device, levels, n_tokens, overlap, kernels, steps,
                                            not args.no_grammar)
        print(label, json.dumps(res), flush=True)
        if label == "main":
            report.update(res)
        else:
            report[label] = res
    if not args.no_hf:
        report["hf"] = bench_hf(model, device, dtype, 32, n_tokens)
        report["speedup_b1_vs_hf"] = round(report["hf"]["b1_ms_per_token"] / report["engine_b1_ms_per_token"], 1)
        for label in ABLATIONS:
            if label in report:
                report[label]["speedup_b1_vs_hf"] = round(
                    report["hf"]["b1_ms_per_token"] / report[label]["engine_b1_ms_per_token"], 1)
    if gpu:
        for label, raw_step in steppers.items():
            (report if label == "main" else report[label])["profile"] = profile_step(lambda: raw_step(1))
    write(report, Path(args.out), "cpu" if not gpu else slug(name))


def describe(d: dict) -> str:
    on = [k for k in ("cuda_graphs", "overlap", "argmax_in_step") if d.get(k)]
    return ", ".join(on + [f"decode kernels: {d.get('decode_kernels', 'torch')}",
                           f"steps per launch: {d.get('steps_per_launch', 1)}"])


def profile_line(r: dict) -> list[str]:
    p = r.get("profile")
    if not p or "error" in p:
        return [f"Kernel profile failed: {p['error']}"] if p else []
    return [f"One batch-1 step: {p['gpu_ops']} GPU kernels/copies spanning {p.get('gpu_span_us')} us "
            f"(sum of kernel durations {p['gpu_time_us']} us; they overlap under PDL)."]


def stream_table(concurrency: list[dict]) -> list[str]:
    return ["| streams | tokens/s | ms/token per stream | ITL p50 ms | ITL p99 ms | TTFT p50 ms |",
            "|---|---|---|---|---|---|"] + [
        f"| {r['streams']} | {r['tokens_per_s']} | {r.get('decode_ms_per_token')} | {r['itl_p50_ms']} | "
        f"{r['itl_p99_ms']} | {r['ttft_p50_ms']} |" for r in concurrency]


def slug(gpu_name: str) -> str:
    for k in ("H200", "H100", "A100", "L4", "A10"):
        if k in gpu_name:
            return k.lower()
    return "cuda"


def write(report: dict, out: Path, tag: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"serving_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Serving benchmark: {report['preset']} on {report['device']}", "",
             f"{report['params_M']}M params, {report['dtype']}, {report['method']}.", "",
             f"Decoder: {describe(report['decoder'])}; warm-up (graph capture) {report['graph_warmup_s']} s.",
             *profile_line(report), "",
             f"- prefill of {report['prefill']['prompt_tokens']} tokens: {report['prefill']['ms']} ms",
             f"- decode step at batch 1 (model + argmax): {report['decode_step_b1_ms']} ms",
             f"- decode step at batch 1, 65 steps chained on the device (no host round trip): "
             f"{report['decode_step_b1_chained_ms']} ms"
             + (f"; {report['decoder']['steps_per_launch']} steps per launch: "
                f"{report['decode_step_b1_chained_groups_ms']} ms/step" if 'decode_step_b1_chained_groups_ms' in report
                else ""),
             f"- decode at batch 1 through the engine: {report['engine_b1_ms_per_token']} ms/token",
             f"- decode step by batch size (ms): {report['decode_step_ms_by_batch']}; moving one 32-token "
             f"row during compaction: {report.get('row_move_ms', 'n/a (one slot)')} ms", "",
             *stream_table(report["concurrency"])]
    for label in ABLATIONS:
        if label not in report:
            continue
        base = report[label]
        lines += ["", f"Ablation `{label}` in the same run ({describe(base['decoder'])}): decode step at batch 1 "
                      f"{base['decode_step_b1_ms']} ms, through the engine {base['engine_b1_ms_per_token']} "
                      f"ms/token; chained {base['decode_step_b1_chained_ms']} ms; warm-up {base['graph_warmup_s']} s.",
                  *profile_line(base), "", *stream_table(base["concurrency"])]
    if "hf" in report:
        hf = report["hf"]
        lines += ["", f"Hugging Face transformers {hf['transformers']} generate() ({hf['attn_implementation']}), "
                      f"same weights: batch 1 {hf['b1_ms_per_token']} ms/token, batch 32 {hf['b32_tokens_per_s']} "
                      f"tokens/s. Engine speed-up at batch 1: {report['speedup_b1_vs_hf']}x"
                      + "".join(f"; {k}: {report[k]['speedup_b1_vs_hf']}x" for k in ABLATIONS
                                if k in report) + "."]
    (out / f"serving_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
