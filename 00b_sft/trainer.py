"""The one supervised fine-tuning loop, shared by `sft` (chat data) and `agent_sft` (tool-use traces).

A conversation becomes one training row with `transformer.chat.render`: input = tokens[:-1],
target = tokens[1:] where the loss mask is 1, else IGNORE_INDEX (user text, the `<|assistant|>` that
opens a turn, and the tool's observation text are given, not learned).

Batches are *padded*, not packed: every row is one conversation that starts at position 0, exactly
like a prompt at inference time, so the model never attends across conversations (with packing, an
induction head could copy "capital of France" from the previous trace instead of the current one).
Rows are grouped by length (shuffled pools of batches sorted by length) so padding wastes little.
Padding is `<|endoftext|>` with IGNORE targets. Conversations longer than block_size + 1 tokens are
dropped and counted (truncating one would cut off its answer).

Resume: the batch of step s is a pure function of (seed, s), so the data position is just the step.
An interrupted run leaves `<out>.partial/` (a checkpoint) and `<out>.partial.state.pt` (optimizer,
step, RNG, history; loaded with weights_only=True); the finished run is `<out>/`.
"""
from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from train.common import JsonlLogger, lr_at, plot_losses
from train.state import git_commit, rng_state, set_rng_state
from transformer import GPT, IGNORE_INDEX
from transformer.chat import render
from transformer.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SFTConfig:
    max_steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 20
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 100    # steps between val losses (and at the end)
    eval_batches: int = 8       # val batches per estimate (0 = the whole val set)
    ckpt_interval: int = 0      # steps between resumable partial checkpoints (0 = only when stopped)
    seed: int = 1337
    device: str = "auto"        # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"         # auto (bfloat16 on CUDA, else float32) | float32 | bfloat16
    stop_after: int = 0         # stop (resumably) after this step; 0 = run to max_steps
    max_time: float = 0.0       # seconds; the LR schedule follows max(step, time) so a slow machine ends on time
    threads: int = 0            # torch CPU threads; 0 = torch's default (1 is robust when the other core is busy)
    dropout: float = -1.0       # dropout while fine-tuning (saved with the model); < 0 = keep the checkpoint's

    @classmethod
    def field_types(cls) -> dict[str, type]:
        return {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {name!r} asked for, but CUDA is not available")
    return name


def set_dropout(model: GPT, p: float) -> None:
    """Every dropout of the model (embeddings, attention and MLP outputs), and its config, to p."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    model.config.dropout = p
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p


def encode(convs: list[dict], tok, block_size: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Conversations -> [(inputs, targets)], and how many were dropped for being too long."""
    examples, dropped = [], 0
    for conv in convs:
        ids, mask = render(conv["messages"], tok)
        if len(ids) - 1 > block_size:
            dropped += 1
            continue
        targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        examples.append((ids[:-1], targets))
    return examples, dropped


class Batches:
    """Deterministic length-grouped batches: `get(step)` depends only on (seed, step)."""

    POOL = 32  # batches per length-sorting pool: bigger = less padding, less randomness

    def __init__(self, examples: list[tuple[list[int], list[int]]], batch_size: int, seed: int,
                 pad_id: int, shuffle: bool = True):
        if not examples:
            raise ValueError("no training examples (all dropped as too long, or none given)")
        self.examples, self.bs, self.seed, self.pad_id, self.shuffle = examples, batch_size, seed, pad_id, shuffle
        self._epoch, self._order = -1, []

    def epoch_order(self, epoch: int) -> list[list[int]]:
        idx = list(range(len(self.examples)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(idx)
        pool = self.bs * self.POOL
        batches = []
        for s in range(0, len(idx), pool):
            chunk = sorted(idx[s:s + pool], key=lambda i: len(self.examples[i][0]))
            batches += [chunk[j:j + self.bs] for j in range(0, len(chunk), self.bs)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        return math.ceil(len(self.examples) / self.bs)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, len(self))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self.epoch_order(epoch)
        return self.collate([self.examples[k] for k in self._order[i]])

    def collate(self, rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(x) for x, _ in rows)
        x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        for r, (xs, ys) in enumerate(rows):
            x[r, :len(xs)] = torch.tensor(xs)
            y[r, :len(ys)] = torch.tensor(ys)
        return x, y


@torch.no_grad()
def estimate_loss(model: GPT, batches: Batches, n: int, device: str, ctx) -> float:
    model.eval()
    order = batches.epoch_order(0)  # sorted by length: take batches spread over all lengths
    order = order[::max(1, len(order) // n)][:n] if n > 0 else order
    total, count = 0.0, 0
    for b in order:
        x, y = batches.collate([batches.examples[k] for k in b])
        with ctx:
            loss = model.learned_loss(x.to(device), y.to(device))
        k = int((y != IGNORE_INDEX).sum())
        total, count = total + float(loss) * k, count + k
    model.train()
    return total / max(count, 1)


def partial_paths(out_dir: Path) -> tuple[Path, Path]:
    return out_dir.with_name(out_dir.name + ".partial"), out_dir.with_name(out_dir.name + ".partial.state.pt")


def train(model: GPT, tok, train_convs: list[dict], val_convs: list[dict], cfg: SFTConfig,
          out_dir: str | Path, meta: dict, log_path: str | Path | None = None,
          plot_path: str | Path | None = None, resume: bool = False) -> dict:
    """Fine-tune `model` in place; write the finished checkpoint to out_dir. Returns a summary dict
    (steps, time, losses, dropped counts). meta (stage, data, tokenizer, init, ...) goes into meta.json."""
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    ctx = (torch.autocast(device_type=device.split(":")[0], dtype=dtype) if dtype != torch.float32
           else torch.autocast("cpu", enabled=False))
    block = model.config.block_size
    train_ex, drop_train = encode(train_convs, tok, block)
    val_ex, drop_val = encode(val_convs, tok, block)
    if drop_train or drop_val:
        print(f"warning: dropped {drop_train} train and {drop_val} val conversations longer than "
              f"block_size={block} tokens")
    pad = tok.special_tokens["<|endoftext|>"]
    batches = Batches(train_ex, cfg.batch_size, cfg.seed, pad)
    val_batches = Batches(val_ex, cfg.batch_size, cfg.seed, pad, shuffle=False) if val_ex else None

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.dropout >= 0:
        set_dropout(model, cfg.dropout)
    model.to(device).train()
    opt = model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.split(":")[0])
    part_dir, part_state = partial_paths(out_dir)
    step, history, elapsed = 0, {"train": [], "val": []}, 0.0
    if resume:
        if not part_state.is_file():
            raise SystemExit(f"--resume: no interrupted run to resume ({part_state} is missing)")
        state = torch.load(part_state, map_location="cpu", weights_only=True)
        if state["config"] != asdict(cfg) | {"stop_after": state["config"]["stop_after"]}:
            print("warning: resuming with a different config than the interrupted run")
        resumed, _ = load_checkpoint(part_dir)
        model.load_state_dict(resumed.state_dict())
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        print(f"resumed {part_dir} at step {step}")

    logger = JsonlLogger(log_path, append=resume) if log_path else None
    full_meta = {**meta, "git_commit": git_commit(), "config": asdict(cfg), "model": model.config.to_dict(),
                 "examples": {"train": len(train_ex), "val": len(val_ex),
                              "dropped_too_long": drop_train + drop_val}}

    def save(final: bool) -> None:
        m = {**full_meta, "step": step, "complete": final, "train_time_s": round(elapsed, 1),
             "losses": {"train": history["train"][-1][1] if history["train"] else None,
                        "val": history["val"][-1][1] if history["val"] else None}}
        model_cpu_state = model  # save_checkpoint copies tensors to CPU itself
        if final:
            save_checkpoint(out_dir, model_cpu_state, m)
            shutil.rmtree(part_dir, ignore_errors=True)
            part_state.unlink(missing_ok=True)
        else:
            save_checkpoint(part_dir, model_cpu_state, m)
            torch.save({"optimizer": opt.state_dict(), "step": step, "rng": rng_state(),
                        "history": history, "elapsed": elapsed, "config": asdict(cfg)}, part_state)

    def evaluate() -> None:
        if val_batches is not None:
            v = estimate_loss(model, val_batches, cfg.eval_batches, device, ctx)
            history["val"].append((step, v))
            if logger:
                logger.log({"step": step, "val_loss": v})

    end = min(cfg.max_steps, cfg.stop_after) if cfg.stop_after > 0 else cfg.max_steps
    bar = tqdm(total=cfg.max_steps, initial=step, desc=meta.get("stage", "sft"), dynamic_ncols=True)
    t0, tokens = time.time() - elapsed, 0
    if step == 0:
        evaluate()

    def schedule_step() -> int:
        """Where the LR schedule is. With max_time, elapsed time can move it ahead of the step count:
        a slow machine still warms up, decays and finishes within max_time, with fewer steps."""
        return max(step, int(cfg.max_steps * elapsed / cfg.max_time)) if cfg.max_time > 0 else step

    while step < end and schedule_step() < cfg.max_steps:
        lr = lr_at(schedule_step(), cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches.get(step)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with ctx:
            loss = model.learned_loss(x, y)  # the vocabulary head only where the loss mask is 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        tokens += int((y != IGNORE_INDEX).sum())
        elapsed = time.time() - t0
        lv = loss.item()
        history["train"].append((step, lv))
        if logger:
            logger.log({"step": step, "train_loss": lv, "lr": lr, "time_s": round(elapsed, 2)})
        bar.update(1)
        bar.set_postfix(loss=f"{lv:.3f}", lr=f"{lr:.1e}")
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate()
        if cfg.ckpt_interval and step % cfg.ckpt_interval == 0 and step < cfg.max_steps:
            save(final=False)
    bar.close()
    done = schedule_step() >= cfg.max_steps
    if done and (not history["val"] or history["val"][-1][0] != step):
        evaluate()
    full_meta["time_limited"] = done and step < cfg.max_steps
    save(final=done)
    if plot_path:
        plot_losses(history, plot_path, title=f"{meta.get('stage', 'sft')} loss")
    tail = [v for _, v in history["train"][-20:]]
    return {"steps": step, "complete": done, "time_limited": full_meta["time_limited"], "time_s": round(elapsed, 1), "device": device,
            "learned_tokens_per_s": round(tokens / max(elapsed, 1e-9)),
            "train_loss_first": history["train"][0][1] if history["train"] else None,
            "train_loss_last20": sum(tail) / len(tail) if tail else None,
            "val_loss_first": history["val"][0][1] if history["val"] else None,
            "val_loss_last": history["val"][-1][1] if history["val"] else None,
            "examples": full_meta["examples"], "out": str(out_dir if done else part_dir)}
