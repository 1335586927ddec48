"""`make demo`: from a fresh checkout to a working chat at http://localhost:8000.

Runs each training stage that the run does not have yet (prepare -> pretrain -> SFT -> agent SFT)
with the default preset for this machine, then starts the inference server (03_model) and the web
app (01_app) and keeps them up until Ctrl-C, which stops both.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from model.launch import wait_healthy

ROOT = Path(__file__).resolve().parents[1]


def stage(name: str, done: bool, cmd: list[str]) -> None:
    if done:
        print(f"[demo] {name}: already done, skipping")
        return
    print(f"[demo] {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, check=True)
    print(f"[demo] {name}: finished in {time.time() - t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="run name: artifacts go to runs/<run>/")
    ap.add_argument("--preset", choices=["cpu", "gpu"], default=None,
                    help="training presets (default: gpu when CUDA is available, else cpu)")
    ap.add_argument("--model-port", type=int, default=9000)
    ap.add_argument("--port", type=int, default=8000, help="port of the web chat")
    ap.add_argument("--kb", default=os.environ.get("KB_PATH"), help="knowledge-base JSON (default: KB_PATH or the shipped one)")
    ap.add_argument("--train-only", action="store_true", help="train the missing stages, then exit")
    args = ap.parse_args()
    preset = args.preset or ("gpu" if torch.cuda.is_available() else "cpu")
    run = ROOT / "runs" / args.run
    t0 = time.time()
    print(f"[demo] run {run} with the {preset} presets", flush=True)

    # Pretraining reads the agent's training traces beside Shakespeare: a model this small learns to
    # copy numbers and names from question to action only when it sees the pattern from step 0
    # (with Shakespeare alone the CPU model scores ~3% on arithmetic; 00c_agent_sft/README.md).
    stage("prepare", (run / "data").is_dir() and (run / "tokenizer").is_dir(),
          ["train.prepare", "--run", args.run, "--data", "shakespeare", "00c_agent_sft/data/train.jsonl"])
    stage("pretrain", (run / "base" / "meta.json").is_file(), ["train.pretrain", "--run", args.run, "--preset", preset])
    stage("sft", (run / "sft" / "meta.json").is_file(), ["sft.train", "--run", args.run, "--preset", preset])
    stage("agent sft", (run / "agent" / "meta.json").is_file(), ["agent_sft.train", "--run", args.run, "--preset", preset])
    print(f"[demo] training stages done in {time.time() - t0:.0f} s", flush=True)
    if args.train_only:
        return

    env = {**os.environ, **({"KB_PATH": str(Path(args.kb).resolve())} if args.kb else {})}
    model_url = f"http://127.0.0.1:{args.model_port}"
    procs = [subprocess.Popen([sys.executable, "-m", "model.serve", "--checkpoint", str(run / "agent"),
                               "--port", str(args.model_port)], cwd=ROOT, env=env)]
    try:
        wait_healthy(model_url + "/health", procs[0], "model server")
        app_cmd = [sys.executable, "-m", "app.serve", "--model-url", model_url + "/v1", "--port", str(args.port)]
        procs.append(subprocess.Popen(app_cmd + (["--kb", env["KB_PATH"]] if "KB_PATH" in env else []),
                                      cwd=ROOT, env=env))
        wait_healthy(f"http://127.0.0.1:{args.port}/health", procs[1], "web app")
        print(f"\n[demo] ready in {time.time() - t0:.0f} s: open http://localhost:{args.port}  (Ctrl-C stops)\n",
              flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        raise SystemExit("[demo] a server exited unexpectedly")
    except RuntimeError as e:  # a server did not come up
        raise SystemExit(f"[demo] {e}") from None
    except KeyboardInterrupt:
        print("\n[demo] stopping", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
