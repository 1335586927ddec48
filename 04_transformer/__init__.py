"""transformer: the GPT model, its KV cache, the byte-level BPE tokenizer, checkpoint I/O, HF interop."""
from .kv_cache import KVCache
from .model import GPT, IGNORE_INDEX, GPTConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "IGNORE_INDEX"]
