"""Where the Triton kernels of this layer run, a tl.dot that is right in both places, and
programmatic dependent launch (PDL) for chains of small kernels.

On a machine without CUDA the kernels run in Triton's CPU interpreter (slow, but exact enough
to test them and to train tiny models). Triton reads TRITON_INTERPRET when a kernel is
*decorated* (module import), so this module must be imported before any @triton.jit below it;
every kernel module of this layer imports it first.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"
_INTERPRET = tl.constexpr(INTERPRET)


def _pdl_available() -> bool:
    """Programmatic dependent launch: Hopper or newer, and a Triton that can launch with it."""
    if os.environ.get("GPU_PDL", "1") == "0" or INTERPRET or not torch.cuda.is_available() \
            or torch.cuda.get_device_capability()[0] < 9:
        return False
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
        from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait  # noqa: F401
    except ImportError:
        return False
    return "launch_pdl" in CUDAOptions.__dataclass_fields__


# Kernels launched with PDL (`kernel[grid](..., **PDL_LAUNCH)`; GPU_PDL=0 turns it off) may start while the kernel before them
# in the stream is still running: they can load what no earlier kernel writes (weights) and must call
# wait_for_inputs() before reading anything an earlier kernel wrote.
PDL: bool = _pdl_available()
PDL_LAUNCH: dict = {"launch_pdl": True} if PDL else {}
_PDL = tl.constexpr(PDL)


@triton.jit
def release_dependents():
    """Let the next kernel in the stream start (under PDL; a no-op otherwise)."""
    if _PDL:
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def wait_for_inputs():
    """Wait until the kernels before this one have finished and their writes are visible (under PDL)."""
    if _PDL:
        tl.extra.cuda.gdc_wait()


@triton.jit
def dot(a, b, acc):
    """acc + a @ b with fp32 accumulation."""
    if a.dtype == tl.float32:
        # fp32 inputs: full precision (the default would round them to tf32 on the GPU)
        acc = tl.dot(a, b, acc, input_precision="ieee")
    elif _INTERPRET and a.dtype == tl.bfloat16:
        # Triton's interpreter computes bf16 tl.dot wrongly (seen with triton 3.9): upcast there
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        acc = tl.dot(a, b, acc)
    return acc


def check_device(*tensors: torch.Tensor) -> None:
    """Clear error instead of a Triton crash when a kernel cannot run on these tensors."""
    dev = tensors[0].device
    for t in tensors:
        if t.device != dev:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {dev}")
    if dev.type == "cpu" and not INTERPRET:
        raise RuntimeError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                           "importing gpu kernels (done automatically when CUDA is absent)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {dev}")
