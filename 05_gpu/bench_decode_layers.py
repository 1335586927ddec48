"""The attention half of a decode step: two kernels against one, at growing cache lengths.

    python -m gpu.bench_decode_layers --out reports/decode_layers_h100.json     # on a CUDA machine

Times (CUDA-graph replays of 16 chains, median of 15) a chain of 12 GPT-2-small layers at batch 1
(random bf16 weights, a random bf16 cache of 1024 positions), each layer as the model's decode step
runs it under programmatic dependent launch: the attention part, then proj + residual, LayerNorm +
fc + GELU, proj + residual (small_linear). The attention part is, per variant:
- `two_kernels`: small_linear (LayerNorm + qkv), then decode_attention (one program per head);
- `fused_splits_1`: qkv_attention with one attention worker per head;
- `fused_splits_8`: qkv_attention with the keys split over up to 8 workers per head (the default);
at cache lengths (the new token's position) 32, 160, 288 and 1000. Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import sys

import torch

from gpu.bench import save_report
from gpu.decode_attention import decode_attention
from gpu.qkv_attention import qkv_attention
from gpu.small_linear import small_linear


C, H, L, MAX_LEN = 768, 12, 12, 1024


def per_chain_us(fn, reps: int = 16, replays: int = 15) -> float:
    """fn captured `reps` times in one CUDA graph; median replay time / reps."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpu.bench_decode_layers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/decode_layers_h100.json", help="JSON report path")
    ap.add_argument("--lengths", default="32,160,288,1000", help="cache positions of the new token")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU")
    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    rnd = lambda *shape, s=0.02: torch.randn(*shape, device=dev, dtype=dt) * s
    layers = [dict(w_qkv=rnd(3 * C, C), b_qkv=rnd(3 * C), w_proj=rnd(C, C), b_proj=rnd(C), w_fc=rnd(4 * C, C),
                   b_fc=rnd(4 * C), w_proj2=rnd(C, 4 * C), b_proj2=rnd(C),
                   ln1=(1 + rnd(C), rnd(C), 1e-5), ln2=(1 + rnd(C), rnd(C), 1e-5)) for _ in range(L)]
    k_cache, v_cache = rnd(L, 1, H, MAX_LEN, C // H, s=1.0), rnd(L, 1, H, MAX_LEN, C // H, s=1.0)
    x0, pos = rnd(1, C, s=1.0), torch.zeros(1, dtype=torch.long, device=dev)

    def chain(attention):
        def run():
            x = x0
            for i, p in enumerate(layers):
                y = attention(x, p, k_cache[i], v_cache[i])
                x = small_linear(y, p["w_proj"], p["b_proj"], residual=x)
                h = small_linear(x, p["w_fc"], p["b_fc"], norm=p["ln2"], gelu=True)
                x = small_linear(h, p["w_proj2"], p["b_proj2"], residual=x)
            return x
        return run

    variants = {
        "two_kernels": lambda x, p, k, v: decode_attention(small_linear(x, p["w_qkv"], p["b_qkv"], norm=p["ln1"]),
                                                           k, v, pos, H),
        "fused_splits_1": lambda x, p, k, v: qkv_attention(x, p["w_qkv"], p["b_qkv"], p["ln1"], k, v, pos, H, splits=1),
        "fused_splits_8": lambda x, p, k, v: qkv_attention(x, p["w_qkv"], p["b_qkv"], p["ln1"], k, v, pos, H, splits=8),
    }
    lengths = [int(n) for n in args.lengths.split(",")]
    results, diffs = {name: {} for name in variants}, {}
    for n in lengths:
        pos.fill_(n)
        outs = {name: chain(fn)().float() for name, fn in variants.items()}  # how far apart the variants' outputs are
        diffs[n] = max((outs[name] - outs["two_kernels"]).abs().max().item() for name in variants)
        for name in variants:
            results[name][n] = round(per_chain_us(chain(variants[name])), 1)
        print(f"position {n:5d}: " + ", ".join(f"{k} {v[n]:6.1f} us" for k, v in results.items()), flush=True)
    save_report(args.out, "gpu.bench_decode_layers", argv,
                what=f"{L} GPT-2-small layers at batch 1, bf16, one chain of PDL-launched kernels; us per chain",
                timing="CUDA graph of 16 chains, median of 15 replays", us_by_position=results,
                max_abs_diff_vs_two_kernels_by_position=diffs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
