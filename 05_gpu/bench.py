"""Benchmark this layer's kernels on a CUDA GPU and write reports/<name>.{json,md,log} + PNG plots.

    python -m gpu.bench [--out reports] [--quick]

Matmul (C = A @ B, square n^3): the CUDA programs (fp32, run as subprocesses, their own timing and
cuBLAS sgemm check) and the Triton kernel vs cuBLAS through torch.matmul (bf16).
Attention (bf16, forward and forward+backward): our Triton flash attention vs PyTorch SDPA with
the flash backend forced vs the unfused matmul -> softmax -> matmul. Shapes keep the work per T
comparable: B*T = 16384 tokens and H*D = 1024 (H = 16 at D = 64, H = 8 at D = 128).
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

GPU_DIR = Path(__file__).resolve().parent
GOALS = {"attn_fwd_vs_sdpa": 0.9, "attn_fwd_vs_unfused": 15.0, "attn_fwdbwd_vs_sdpa": 0.7,
         "triton_vs_cublas_4096": 0.8, "tiled_vs_naive": 2.0}


def find_cublas() -> str | None:
    """Path of a libcublas for the CUDA programs (they dlopen it): $CUBLAS_LIB, else torch's wheel."""
    if os.environ.get("CUBLAS_LIB"):
        return os.environ["CUBLAS_LIB"]
    roots = [Path(torch.__file__).parent / "lib"] + [Path(p) / "nvidia" for p in sys.path if p]
    for root in roots:
        hits = sorted(glob.glob(str(root / "**" / "libcublas.so*"), recursive=True))
        if hits:
            return hits[-1]
    return None


def save_report(out: str | Path, script: str, argv: list[str] | None, **fields) -> None:
    """A benchmark's JSON report: the device and versions, its fields, and the command that wrote it."""
    import triton
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              **fields, "command": f"python -m {script} " + " ".join(sys.argv[1:] if argv is None else argv)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


def log(msg: str, lines: list) -> None:
    print(msg, flush=True)
    lines.append(msg)


def run_cuda_program(exe: Path, n: int) -> dict:
    env = dict(os.environ)
    lib = find_cublas()
    if lib:
        env["CUBLAS_LIB"] = lib
    out = subprocess.run([str(exe), str(n), str(n), str(n)], capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{exe.name} {n} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    vals = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("time_ms", "tflops", "max_rel_err", "cublas_tflops"):
            vals[parts[0]] = float(parts[1])
    return vals


def bench_matmul(sizes: list, bin_dir: Path, lines: list) -> list:
    import triton
    from gpu.matmul import matmul

    rows = []
    for n in sizes:
        row = {"n": n}
        for prog in ("matmul_naive", "matmul_tiled"):
            r = run_cuda_program(bin_dir / prog, n)
            row[prog.split("_")[1] + "_fp32_tflops"] = r["tflops"]
            row[prog.split("_")[1] + "_max_rel_err"] = r["max_rel_err"]
            row["cublas_fp32_tflops"] = r["cublas_tflops"]
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        ref = torch.matmul(a, b).float()
        row["triton_max_rel_err"] = ((matmul(a, b).float() - ref).abs().max() / ref.abs().max()).item()
        flops = 2 * n**3
        for name, fn in (("triton_bf16", lambda: matmul(a, b)), ("cublas_bf16", lambda: torch.matmul(a, b))):
            ms = triton.testing.do_bench(fn, return_mode="median")
            row[name + "_tflops"] = flops / (ms * 1e-3) / 1e12
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), lines)
        rows.append(row)
    return rows


def unfused_attention(q, k, v, is_causal: bool, mask: torch.Tensor | None):
    """The three-kernel version: S = QK^T (scale folded into q), P = softmax(S), O = PV."""
    s = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if is_causal:
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def bench_attention(seq_lens: list, head_dims: list, lines: list) -> list:
    import triton
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention
    from gpu.flash_attention import flash_attention

    def sdpa(q, k, v, c):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return scaled_dot_product_attention(q, k, v, is_causal=c)

    rows = []
    for D in head_dims:
        H = 1024 // D
        for T in seq_lens:
            B = max(1, 16384 // T)
            for causal in (False, True):
                shape = (B, H, T, D)
                q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
                do = torch.randn_like(q)
                mask = torch.ones(T, T, dtype=torch.bool, device="cuda").triu(1) if causal else None
                impls = {"ours": lambda: flash_attention(q, k, v, causal), "sdpa_flash": lambda: sdpa(q, k, v, causal),
                         "unfused": lambda: unfused_attention(q, k, v, causal, mask)}
                fwd_flops = 4 * B * H * T * T * D * (0.5 if causal else 1.0)
                row = {"B": B, "H": H, "T": T, "D": D, "causal": causal}
                with torch.no_grad():
                    ref = sdpa(q, k, v, causal).float()
                    row["max_abs_err_vs_sdpa"] = (flash_attention(q, k, v, causal).float() - ref).abs().max().item()
                for name, fn in impls.items():
                    try:
                        ms = triton.testing.do_bench(fn, return_mode="median")
                        row[f"{name}_fwd_tflops"] = fwd_flops / (ms * 1e-3) / 1e12

                        def fwd_bwd(fn=fn):
                            fn().backward(do)
                        ms = triton.testing.do_bench(fwd_bwd, grad_to_none=[q, k, v], return_mode="median")
                        row[f"{name}_fwdbwd_tflops"] = 3.5 * fwd_flops / (ms * 1e-3) / 1e12  # bwd = 2.5x fwd
                    except torch.OutOfMemoryError:
                        row.setdefault(f"{name}_fwd_tflops", None)
                        row[f"{name}_fwdbwd_tflops"] = None
                        log(f"  {name} out of memory at {shape}", lines)
                    torch.cuda.empty_cache()
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), lines)
                rows.append(row)
                del q, k, v, do, mask
                torch.cuda.empty_cache()
    return rows


def warm_compile(head_dims: list, lines: list) -> None:
    """Compile every autotune config ahead of the timed run, in parallel processes (one per head dim
    x causal, one for matmul) that share Triton's on-disk cache: the autotuner alone compiles its
    configs one after another, which takes minutes. The timed run then only loads binaries."""
    t0 = time.time()
    specs = [f"{D},{int(c)}" for D in head_dims for c in (False, True)] + ["matmul"]
    procs = [subprocess.Popen([sys.executable, "-m", "gpu.bench", "--warm", s]) for s in specs]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"warm-up compile failed: {dict(zip(specs, codes))}")
    log(f"warm-up compile of all configs: {time.time() - t0:.1f} s ({len(specs)} processes)", lines)


def _warm(spec: str) -> None:
    if spec == "matmul":
        from gpu.matmul import matmul
        a = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
        matmul(a, a)
    else:  # same H and D as bench_attention, so the kernels specialise the same way
        from gpu.flash_attention import flash_attention
        D, causal = (int(x) for x in spec.split(","))
        q, k, v = (torch.randn(1, 1024 // D, 512, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        flash_attention(q, k, v, bool(causal)).sum().backward()
    torch.cuda.synchronize()


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def summarize(mm: list, attn: list) -> dict:
    """Each goal: the measured ratios it applies to, and whether all of them meet it."""
    out = {}
    at = [r for r in attn if r["T"] == 4096]
    checks = {
        "attn_fwd_vs_sdpa": [ratio(r["ours_fwd_tflops"], r["sdpa_flash_fwd_tflops"]) for r in at],
        "attn_fwd_vs_unfused": [ratio(r["ours_fwd_tflops"], r["unfused_fwd_tflops"]) for r in at],
        "attn_fwdbwd_vs_sdpa": [ratio(r["ours_fwdbwd_tflops"], r["sdpa_flash_fwdbwd_tflops"]) for r in at],
        "triton_vs_cublas_4096": [ratio(r["triton_bf16_tflops"], r["cublas_bf16_tflops"]) for r in mm if r["n"] == 4096],
        "tiled_vs_naive": [ratio(r["tiled_fp32_tflops"], r["naive_fp32_tflops"]) for r in mm],
    }
    for name, vals in checks.items():
        vals = [v for v in vals if v is not None]
        out[name] = {"goal": GOALS[name], "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                     "met": bool(vals) and min(vals) >= GOALS[name]}
    return out


def fmt(x, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def write_markdown(path: Path, res: dict) -> None:
    L = [f"# GPU kernels on {res['device']}", "", f"torch {res['torch']}, triton {res['triton']}, {res['time']}. "
         "Written by `python -m gpu.bench`; all numbers TFLOP/s (higher is better).", "", "## Matmul (n x n x n)", "",
         "| n | naive fp32 | tiled fp32 | cuBLAS fp32 | Triton bf16 | cuBLAS bf16 | tiled/naive | Triton/cuBLAS bf16 |",
         "|---|---|---|---|---|---|---|---|"]
    for r in res["matmul"]:
        L.append(f"| {r['n']} | {fmt(r['naive_fp32_tflops'])} | {fmt(r['tiled_fp32_tflops'])} | {fmt(r['cublas_fp32_tflops'])} | "
                 f"{fmt(r['triton_bf16_tflops'])} | {fmt(r['cublas_bf16_tflops'])} | "
                 f"{fmt(ratio(r['tiled_fp32_tflops'], r['naive_fp32_tflops']), 2)} | "
                 f"{fmt(ratio(r['triton_bf16_tflops'], r['cublas_bf16_tflops']), 2)} |")
    L += ["", "CUDA programs: fp32 (no tensor cores), checked against cuBLAS sgemm (pedantic fp32). "
          "Triton and cuBLAS bf16: bf16 inputs, fp32 accumulation (tensor cores).", "",
          "## Attention (bf16, B*T = 16384, H*D = 1024)", "",
          "| D | causal | T | ours fwd | SDPA-flash fwd | unfused fwd | ours/SDPA | ours/unfused | ours fwd+bwd | SDPA-flash fwd+bwd | unfused fwd+bwd | ours/SDPA fwd+bwd |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["attention"]:
        L.append(f"| {r['D']} | {r['causal']} | {r['T']} | {fmt(r['ours_fwd_tflops'])} | {fmt(r['sdpa_flash_fwd_tflops'])} | "
                 f"{fmt(r['unfused_fwd_tflops'])} | {fmt(ratio(r['ours_fwd_tflops'], r['sdpa_flash_fwd_tflops']), 2)} | "
                 f"{fmt(ratio(r['ours_fwd_tflops'], r['unfused_fwd_tflops']), 2)} | {fmt(r['ours_fwdbwd_tflops'])} | "
                 f"{fmt(r['sdpa_flash_fwdbwd_tflops'])} | {fmt(r['unfused_fwdbwd_tflops'])} | "
                 f"{fmt(ratio(r['ours_fwdbwd_tflops'], r['sdpa_flash_fwdbwd_tflops']), 2)} |")
    L += ["", "FLOPs: forward 4*B*H*T^2*D (halved when causal), forward+backward 3.5x that. "
          "Unfused = `softmax((q/sqrt(D)) @ k^T [masked]) @ v` in bf16 (PyTorch kernels).", "",
          "## Goals", "", "| goal | target | measured min | measured max | met |", "|---|---|---|---|---|"]
    for name, g in res["goals"].items():
        L.append(f"| {name} | >= {g['goal']} | {fmt(g['min'], 2)} | {fmt(g['max'], 2)} | {'yes' if g['met'] else 'no'} |")
    L += ["", "Attention goals are measured at T = 4096 over D in {64, 128} x {non-causal, causal}; "
          "tiled/naive over all matmul sizes."]
    path.write_text("\n".join(L) + "\n")


def plot(out: Path, name: str, res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ns = [r["n"] for r in res["matmul"]]
    for key, label in [("naive_fp32", "naive CUDA fp32"), ("tiled_fp32", "tiled CUDA fp32"), ("cublas_fp32", "cuBLAS fp32"),
                       ("triton_bf16", "Triton bf16"), ("cublas_bf16", "cuBLAS bf16")]:
        ax.plot(ns, [r[key + "_tflops"] for r in res["matmul"]], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="n (n x n x n)", ylabel="TFLOP/s", title=f"matmul, {res['device']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{name}_matmul.png", dpi=120)
    plt.close(fig)
    Ds = sorted({r["D"] for r in res["attention"]})
    fig, axes = plt.subplots(2, 2 * len(Ds), figsize=(5 * len(Ds) * 2, 7), squeeze=False)
    for j, (D, causal) in enumerate([(D, c) for D in Ds for c in (False, True)]):
        rows = [r for r in res["attention"] if r["D"] == D and r["causal"] == causal]
        for i, mode in enumerate(("fwd", "fwdbwd")):
            ax = axes[i][j]
            for impl in ("ours", "sdpa_flash", "unfused"):
                ax.plot([r["T"] for r in rows], [r[f"{impl}_{mode}_tflops"] for r in rows], marker="o", label=impl)
            ax.set(xscale="log", xlabel="T", ylabel="TFLOP/s", title=f"D={D} causal={causal} {mode}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}_attention.png", dpi=110)
    plt.close(fig)


def main(argv: list | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
    p.add_argument("--name", default="gpu_h100", help="file name stem (default: gpu_h100)")
    p.add_argument("--quick", action="store_true", help="small sizes only: a smoke test of the whole pipeline")
    p.add_argument("--bin", type=Path, default=GPU_DIR / "bin", help="folder with the built CUDA programs")
    p.add_argument("--warm", metavar="SPEC", help=argparse.SUPPRESS)  # internal: one warm_compile worker
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("gpu.bench needs a CUDA device (torch.cuda.is_available() is False)")
    if args.warm:
        return _warm(args.warm)
    for prog in ("matmul_naive", "matmul_tiled"):
        if not (args.bin / prog).exists():
            sys.exit(f"{args.bin / prog} missing: build it first with `make -C 05_gpu`")
    import triton

    args.out.mkdir(parents=True, exist_ok=True)
    lines: list = []
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
           "shapes": "attention: bf16, B = 16384 // T, H = 1024 // D; matmul: square n"}
    log(f"device {res['device']} torch {res['torch']} triton {res['triton']} quick={args.quick}", lines)
    warm_compile([64, 128], lines)
    sizes = [1024, 2048] if args.quick else [1024, 2048, 4096, 8192]
    res["matmul"] = bench_matmul(sizes, args.bin, lines)
    seq = [512, 1024] if args.quick else [512, 1024, 2048, 4096, 8192]
    res["attention"] = bench_attention(seq, [64, 128], lines)
    res["goals"] = summarize(res["matmul"], res["attention"])
    for k, g in res["goals"].items():
        log(f"goal {k}: >= {g['goal']} min={fmt(g['min'], 2)} max={fmt(g['max'], 2)} met={g['met']}", lines)
    (args.out / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(args.out / f"{args.name}.md", res)
    (args.out / f"{args.name}.log").write_text("\n".join(lines) + "\n")
    plot(args.out, args.name, res)
    print(f"wrote {args.out}/{args.name}.json .md .log and plots", flush=True)


if __name__ == "__main__":
    main()
