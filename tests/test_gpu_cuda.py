"""GPU-only checks (marker `gpu`; tests/conftest.py deselects them when CUDA is absent).

Each check runs in a subprocess with TRITON_INTERPRET=0: the CPU test files switch this process to
Triton's interpreter, and a compiled-kernel check must not inherit that.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
GPU_DIR = Path(__file__).resolve().parent.parent / "05_gpu"


def _run_checks(names: list) -> None:
    """Run checks in parallel subprocesses: most of their time is Triton compiling kernels."""
    env = {**os.environ, "TRITON_INTERPRET": "0", "GPU_AUTOTUNE": "0"}  # one config: compile, don't tune
    procs = {n: subprocess.Popen([sys.executable, __file__, n], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=env) for n in names}
    failed = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        print(out)
        if proc.returncode != 0:
            failed.append(f"check {name} failed:\n{out}")
    assert not failed, "\n".join(failed)


def test_cuda_matmul_programs(tmp_path: Path) -> None:
    from gpu.bench import find_cublas

    if shutil.which("nvcc"):
        build = subprocess.run(["make", "-C", str(GPU_DIR), f"BIN={tmp_path}"], capture_output=True, text=True)
        assert build.returncode == 0, build.stdout + build.stderr
        bin_dir = tmp_path
    else:  # a GPU box without the toolkit: use programs built elsewhere (make -C 05_gpu)
        bin_dir = GPU_DIR / "bin"
        assert (bin_dir / "matmul_tiled").exists(), "no nvcc and no prebuilt 05_gpu/bin: run make -C 05_gpu"
    env = {**os.environ, "CUBLAS_LIB": find_cublas() or ""}
    for prog in ("matmul_naive", "matmul_tiled"):
        for dims in (["1", "1", "1"], ["1000", "999", "1001"], ["130", "70", "257"], []):
            out = subprocess.run([str(bin_dir / prog), *dims], capture_output=True, text=True, env=env, timeout=120)
            assert out.returncode == 0 and "OK" in out.stdout, f"{prog} {dims}:\n{out.stdout}\n{out.stderr}"


def test_flash_attention_and_matmul_on_cuda() -> None:
    _run_checks(["attention:bf16:32", "attention:bf16:64", "attention:bf16:128", "attention:fp16:64",
                 "attention:fp32:64", "matmul"])


def check_attention(dtype_name: str, D: int) -> None:
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa
    from gpu.flash_attention import flash_attention

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    tol = {torch.float32: 2e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
    for T, causal in ((1, True), (17, False), (1000, True), (333, False), (2048, True)):
        q, k, v = (torch.randn(2, 3, T, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        y = flash_attention(q, k, v, causal)
        grads = torch.autograd.grad(y, (q, k, v), do)
        q32, k32, v32 = (x.detach().double().requires_grad_() for x in (q, k, v))
        ref = sdpa(q32, k32, v32, is_causal=causal)
        ref_grads = torch.autograd.grad(ref, (q32, k32, v32), do.double())
        for name, a, b in zip(("out", "dq", "dk", "dv"), (y, *grads), (ref, *ref_grads)):
            err = ((a.double() - b).abs().max() / b.abs().max().clamp_min(1.0)).item()
            print(f"{dtype} D={D} T={T} causal={causal} {name} err={err:.2e}")
            assert err < tol[dtype], f"{name} {dtype} D={D} T={T} causal={causal}: {err:.3g}"


def check_matmul() -> None:
    import torch
    from gpu.matmul import matmul

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for M, N, K in ((1, 1, 1), (1000, 999, 1001), (4096, 4096, 4096), (77, 4099, 130)):
            a = torch.randn(M, K, device="cuda", dtype=dtype)
            b = torch.randn(K, N, device="cuda", dtype=dtype)
            ref = a.double() @ b.double()
            err = ((matmul(a, b).double() - ref).abs().max() / ref.abs().max()).item()
            print(f"matmul {dtype} {M}x{N}x{K} rel err {err:.2e}")
            assert err < (1e-5 if dtype == torch.float32 else 1e-2), err


if __name__ == "__main__":
    what, *rest = sys.argv[1].split(":")
    check_matmul() if what == "matmul" else check_attention(rest[0], int(rest[1]))
