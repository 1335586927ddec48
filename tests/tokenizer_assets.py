"""GPT-2's official BPE ranks (gpt2.tiktoken), fetched offline-friendly for tests.

openai-whisper's sdist ships whisper/assets/gpt2.tiktoken (50,256 ranks). We `pip download` the
pinned sdist once into a cache dir, extract that one file and check its sha256. Cache dir:
$LLM_STACK_CACHE, else <repo>/.cache/llm-stack (git-ignored). No network and no cache -> a clear
failure, never a skip.
"""
from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import tarfile

WHISPER_SDIST = "openai-whisper==20250625"
GPT2_MEMBER = "whisper/assets/gpt2.tiktoken"
GPT2_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir() -> str:
    return os.environ.get("LLM_STACK_CACHE") or os.path.join(REPO, ".cache", "llm-stack")


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def gpt2_ranks_path() -> str:
    """Path of a verified gpt2.tiktoken; downloads and extracts it on first use."""
    root = cache_dir()
    path = os.path.join(root, "gpt2.tiktoken")
    if os.path.exists(path) and _sha256(path) == GPT2_SHA256:
        return path
    os.makedirs(root, exist_ok=True)
    sdists = glob.glob(os.path.join(root, "openai_whisper-*.tar.gz"))
    if not sdists:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", root, WHISPER_SDIST]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        sdists = glob.glob(os.path.join(root, "openai_whisper-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise RuntimeError(
                f"could not download GPT-2's ranks ({' '.join(cmd)} exited {proc.returncode}):\n"
                f"{proc.stderr[-2000:]}\nFix network/pip access, or put gpt2.tiktoken "
                f"(sha256 {GPT2_SHA256}) at {path}.")
    with tarfile.open(sdists[0], "r:gz") as tar:  # read the one member; never extract paths
        member = next((m for m in tar.getmembers() if m.name.endswith("/" + GPT2_MEMBER)), None)
        if member is None:
            raise RuntimeError(f"{sdists[0]} holds no {GPT2_MEMBER}")
        data = tar.extractfile(member).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_SHA256:
        raise RuntimeError(f"{GPT2_MEMBER} from {sdists[0]} has sha256 {digest}, expected {GPT2_SHA256}")
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(gpt2_ranks_path())
