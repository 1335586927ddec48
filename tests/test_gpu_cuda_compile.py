"""The standalone CUDA matmul programs compile with nvcc (no GPU needed, cuBLAS is dlopen'ed)."""
import os
import shutil
import subprocess
from pathlib import Path

GPU_DIR = Path(__file__).resolve().parent.parent / "05_gpu"


def test_cuda_programs_compile(tmp_path: Path) -> None:
    nvcc = os.environ.get("NVCC", "nvcc")
    assert shutil.which(nvcc), (
        f"'{nvcc}' not found on PATH: the CUDA toolkit compiler is needed to build 05_gpu/*.cu "
        "(install the CUDA toolkit, or set NVCC=/path/to/nvcc)")
    out = subprocess.run(["make", "-C", str(GPU_DIR), f"BIN={tmp_path}", f"NVCC={nvcc}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"make failed:\n{out.stdout}\n{out.stderr}"
    for name in ("matmul_naive", "matmul_tiled"):
        exe = tmp_path / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} was not built"
        # argument parsing runs before any CUDA call, so it can be checked without a GPU
        usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
        assert usage.returncode == 0 and "usage" in usage.stdout
        bad = subprocess.run([str(exe), "4", "x", "4"], capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "bad size" in bad.stderr
