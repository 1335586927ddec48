"""`python -m model.serve` in a subprocess on a free loopback port, for the live-server tests."""
from __future__ import annotations

import subprocess
import sys

import httpx
import openai

from model.launch import free_port, wait_healthy


class Server:
    """Starts the server and waits until /health answers; `client` is the official openai client."""

    def __init__(self, ckpt, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model.serve", "--checkpoint", str(ckpt), "--port", str(self.port),
             "--threads", "1", "--log-level", "warning", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_healthy(self.url + "/health", self.proc, "server", timeout=60)
        except RuntimeError as e:
            self.close()
            raise RuntimeError(f"{e}:\n{self.proc.stdout.read()}") from None
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def health(self) -> dict:
        return httpx.get(self.url + "/health").json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
