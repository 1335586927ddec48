"""transformer: the GPT model, its KV cache, the byte-level BPE tokenizer, checkpoint I/O, HF interop.

The model classes load lazily, so the tokenizer (and its CLI) start without importing torch.
"""
from importlib import import_module

_LAZY = {"GPT": ".model", "GPTConfig": ".model", "IGNORE_INDEX": ".model", "KVCache": ".kv_cache"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'transformer' has no attribute {name!r}")
