"""Pretraining configuration: two dataclass sections (model = transformer.GPTConfig, train), presets,
and `--section.field=value` command-line overrides checked against the dataclass fields."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from transformer import GPTConfig


@dataclass
class TrainConfig:
    seed: int = 1337
    batch_size: int = 16          # sequences per forward pass on one process (micro-batch)
    tokens_per_step: int = 0      # global tokens per optimizer step (grad accumulation); 0 = one micro-batch per process
    max_steps: int = 1000
    lr: float = 1e-3              # peak learning rate, after linear warmup
    min_lr: float = 1e-4          # cosine decay ends here at max_steps
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0        # max global grad norm; 0 = off
    eval_interval: int = 250      # steps between validation losses (also at the start and the end)
    eval_iters: int = 20          # validation batches per estimate (same windows every time); 0 = no validation
    sample_interval: int = 0      # steps between printed samples; 0 = only at the end
    sample_tokens: int = 120
    ckpt_interval: int = 1000     # steps between checkpoints (also at the end)
    log_interval: int = 10        # steps between progress-bar / metrics-log updates
    stop_after: int = 0           # stop (and save) after this many steps in this invocation; 0 = run to max_steps
    max_time: float = 0.0         # stop (and save) after this many seconds of training; 0 = no limit
    compile: bool = False         # torch.compile the model
    threads: int = 0              # CPU intra-op threads (torch.set_num_threads); 0 = torch's default
    dtype: str = "auto"           # auto (bf16 autocast on CUDA, fp32 elsewhere) | bf16 | fp32
    data: str = ""                # token-shard dir; "" = runs/<run>/data


@dataclass
class Config:
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return cls(GPTConfig.from_dict(d["model"]), TrainConfig(**d["train"]))


def padded_vocab(n: int) -> int:
    """A tokenizer's vocabulary size rounded up to a multiple of 64 (the model's vocab_size)."""
    return -(-n // 64) * 64


# vocab_size 0 = take it from the data (the run's tokenizer), rounded up by padded_vocab
PRESETS: dict[str, dict[str, dict]] = {
    # 2 CPU cores, <= 9 minutes: 0.74M params, ~4.6M tokens (vocab 4096 from `train.prepare`). 4500 steps rather
    # than 3000: the agent pipeline on top got 53 more of its 2124 test items right (same seed, side by side,
    # reports/agent_cpu_runs/README.md); 3000 had beaten 1500 by 7 points in each of two seeds, 1500 beaten 1000.
    # Sized by measurement: per token trained, 3L/96d reached the same val loss as 4L/128d at 1.6x the speed.
    # One thread: ~5-10k tokens/s whether or not the other core is busy; two OpenMP threads measured 8x slower
    # (700 tokens/s) while another process used a core. max_time stops (and saves) early on a slower machine.
    "cpu": {"model": dict(block_size=128, vocab_size=0, n_layer=3, n_head=4, n_embd=96),
            "train": dict(batch_size=8, max_steps=4500, lr=6e-3, min_lr=6e-4, warmup_steps=30, threads=1,
                          eval_interval=250, eval_iters=8, sample_interval=1000, ckpt_interval=4500, log_interval=10,
                          max_time=500)},
    # one H100, <= 2 minutes: ~27M parameters, bf16
    "gpu": {"model": dict(block_size=512, vocab_size=0, n_layer=8, n_head=8, n_embd=512, dropout=0.2),
            "train": dict(batch_size=64, max_steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_interval=200, eval_iters=20, sample_interval=500, ckpt_interval=1000,
                          log_interval=20)},
    # GPT-2 small's shape, for throughput: 0.5M tokens per step like GPT-2/nanoGPT; micro-batch 32 x 1024
    # measured 5% faster than 16 on an H100 (reports/pretrain_h100*.json)
    "gpt2-124m": {"model": dict(block_size=1024, vocab_size=50304, n_layer=12, n_head=12, n_embd=768),
                  "train": dict(batch_size=32, tokens_per_step=524288, max_steps=19073, lr=6e-4, min_lr=6e-5,
                                warmup_steps=700, eval_interval=500, eval_iters=20, sample_interval=2000,
                                ckpt_interval=2000, log_interval=10, compile=True)},
}


def _convert(raw: str, kind: str, name: str):
    try:
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes", "on")
        return {"int": int, "float": float, "str": str}[kind](raw)
    except ValueError:
        raise ValueError(f"--{name}: {raw!r} is not a valid {kind}") from None


def apply_overrides(cfg: Config, overrides: dict[str, str | object]) -> Config:
    """{"model.n_layer": "6", "train.lr": 1e-3} -> a new Config; unknown names raise ValueError."""
    sections = {"model": cfg.model, "train": cfg.train}
    for name, value in overrides.items():
        section, _, key = name.partition(".")
        obj = sections.get(section)
        if obj is None:
            raise ValueError(f"--{name}: unknown section {section!r}; use --model.FIELD or --train.FIELD")
        kinds = {f.name: str(f.type) for f in fields(obj)}
        if key not in kinds:
            raise ValueError(f"--{name}: unknown field; {section} fields: {', '.join(kinds)}")
        if isinstance(value, str):
            value = _convert(value, kinds[key], name)
        sections[section] = obj = replace(obj, **{key: value})
    return Config(sections["model"], sections["train"])


def parse_overrides(args: list[str]) -> dict[str, str]:
    """['--model.n_layer=6', '--train.lr', '1e-3'] -> {'model.n_layer': '6', 'train.lr': '1e-3'}."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or "." not in a.split("=")[0]:
            raise ValueError(f"unrecognized argument {a!r} (overrides look like --model.n_layer=6)")
        if "=" in a:
            k, v = a[2:].split("=", 1)
        elif i + 1 < len(args):
            k, v = a[2:], args[i + 1]
            i += 1
        else:
            raise ValueError(f"{a}: missing value")
        out[k] = v
        i += 1
    return out


def make_config(preset: str, overrides: dict[str, str] | None = None) -> Config:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = PRESETS[preset]
    cfg = Config(GPTConfig(**p["model"]), TrainConfig(**p["train"]))
    return apply_overrides(cfg, overrides or {})


def grad_accum_steps(cfg: Config, world: int) -> int:
    """Micro-batches per process per optimizer step so the global batch is train.tokens_per_step."""
    per = cfg.train.batch_size * cfg.model.block_size * world
    if cfg.train.tokens_per_step <= 0:
        return 1
    if cfg.train.tokens_per_step % per:
        raise ValueError(f"train.tokens_per_step={cfg.train.tokens_per_step} is not a multiple of batch_size "
                         f"x block_size x processes = {cfg.train.batch_size} x {cfg.model.block_size} x {world}")
    return cfg.train.tokens_per_step // per
