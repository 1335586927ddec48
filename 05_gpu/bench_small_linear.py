"""small_linear against cuBLAS at GPT-2 small's decode shapes, and the sweep that picked its config.

    python -m gpu.bench_small_linear --out reports/small_linear_h100.json     # on a CUDA machine

For each matmul of a decode step (qkv with its LayerNorm, attention proj + residual, fc with LayerNorm
and GELU, MLP proj + residual, and the 50304-row head with ln_f) and B = 1, 2, 4 rows, times (CUDA-graph replays, triton's
do_bench_cudagraph) PyTorch's unfused ops (cuBLAS matmul + LayerNorm / GELU / add kernels), our kernel
with the config small_linear picks, and every config of a small grid, each launched on its own (no
programmatic dependent launch, whose overlap shows in the serving benchmark); prints them and writes JSON.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import torch
import torch.nn.functional as F

from gpu.bench import save_report
from gpu.small_linear import _config, _small_linear_kernel, small_linear

import triton  # noqa: E402  (after gpu, which picks interpreter vs GPU)
from triton.testing import do_bench_cudagraph  # noqa: E402

SHAPES = {"qkv": (2304, 768, "norm"), "proj": (768, 768, "res"), "fc": (3072, 768, "norm_gelu"),
          "proj2": (768, 3072, "res"), "head": (50304, 768, "norm")}  # (N, K, what is fused) at n_embd = 768
LAYER = ("qkv", "proj", "fc", "proj2")  # the matmuls of one transformer layer
GRID = list(itertools.product((1, 2, 4, 8), (256, 512, 1024), (2, 4)))  # BLOCK_N, BLOCK_K, num_warps


def us(fn) -> float:
    return do_bench_cudagraph(fn) * 1e3


def bench_shape(B: int, N: int, K: int, kind: str) -> dict:
    dev, dt = "cuda", torch.bfloat16
    x, w = torch.randn(B, K, device=dev, dtype=dt), torch.randn(N, K, device=dev, dtype=dt) * 0.02
    b, r = torch.randn(N, device=dev, dtype=dt), torch.randn(B, N, device=dev, dtype=dt)
    g, beta = torch.ones(K, device=dev, dtype=dt), torch.zeros(K, device=dev, dtype=dt)
    norm = (g, beta, 1e-5) if "norm" in kind else None
    gelu, res = "gelu" in kind, (r if kind == "res" else None)

    def torch_ops():
        h = F.layer_norm(x, (K,), g, beta) if norm else x
        y = F.linear(h, w, b)
        y = F.gelu(y, approximate="tanh") if gelu else y
        return y + r if res is not None else y
    err = (small_linear(x, w, b, norm=norm, gelu=gelu, residual=res).float() - torch_ops().float()).abs().max().item()
    out = torch.empty(B, N, device=dev, dtype=dt)

    def kernel(block_b: int, bn: int, bk: int, warps: int):  # launched plainly (no PDL): one kernel's time
        return lambda: _small_linear_kernel[(triton.cdiv(N, bn),)](
            x, w, b, g, beta, r, out, B, N, K, x.stride(0), w.stride(0), r.stride(0), out.stride(0), 1e-5,
            HAS_BIAS=True, HAS_NORM=norm is not None, HAS_NORM_BIAS=norm is not None, GELU=gelu,
            HAS_RES=res is not None, BLOCK_B=block_b, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps)
    block_b, our_bn, our_bk, our_warps = _config(B, K)
    our_bk = triton.next_power_of_2(K) if norm is not None else our_bk  # as small_linear does
    grid = {}
    for bn, bk, warps in GRID:
        if block_b * bn * bk > 8192 or (norm is not None and bk < K):  # registers; a norm needs one chunk
            continue
        grid[f"{bn},{bk},{warps}"] = round(us(kernel(block_b, bn, bk, warps)), 2)
    best = min(grid, key=grid.get)
    return {"B": B, "N": N, "K": K, "fused": kind, "torch_ops_us": round(us(torch_ops), 2),
            "ours_us": round(us(kernel(block_b, our_bn, our_bk, our_warps)), 2),
            "ours_config": [block_b, our_bn, our_bk, our_warps], "max_abs_err_vs_torch": err,
            "best_grid_us": grid[best], "best_grid_config": best, "grid_us": grid}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpu.bench_small_linear", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/small_linear_h100.json", help="JSON report path")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU")
    torch.manual_seed(0)
    rows = []
    for B in (1, 2, 4):
        for name, (N, K, kind) in SHAPES.items():
            r = {"name": name, **bench_shape(B, N, K, kind)}
            rows.append(r)
            print(f"B={B} {name:5s} {N}x{K} ({kind}): torch ops {r['torch_ops_us']:5.1f} us | ours "
                  f"{r['ours_us']:5.1f} us {tuple(r['ours_config'])} | best of grid {r['best_grid_us']:5.1f} us "
                  f"({r['best_grid_config']}) | err {r['max_abs_err_vs_torch']:.2g}", flush=True)
    per_layer = {B: {k: round(sum(r[k] for r in rows if r["B"] == B and r["name"] in LAYER), 1)
                     for k in ("torch_ops_us", "ours_us")} for B in (1, 2, 4)}
    for B, t in per_layer.items():
        print(f"B={B}: one layer's four matmuls with their neighbours: torch ops {t['torch_ops_us']} us, "
              f"ours {t['ours_us']} us ({t['torch_ops_us'] / t['ours_us']:.2f}x)", flush=True)
    save_report(args.out, "gpu.bench_small_linear", argv, dtype="bfloat16",
                timing="triton.testing.do_bench_cudagraph (CUDA-graph replays), us", rows=rows, per_layer=per_layer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
