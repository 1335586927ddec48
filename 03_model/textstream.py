"""Token ids -> text that is safe to send: whole UTF-8 characters, stop strings cut server-side.

Two problems meet here. A token may end in the middle of a multi-byte character, so decoding runs
through `StreamDecoder`, which returns only complete characters. And a stop string may arrive split
over several tokens ("<" then "/s>"), so text that could still become the start of a stop string is
held back until the next token decides: it is either released or, when the stop string completes,
dropped together with everything after it (OpenAI semantics: the stop string is not returned).

Special tokens either decode to their spelling ("<|end|>", for the raw endpoints, where learners
read the protocol) or are passed through as ids (chat, where they switch between thought, action
and answer). In the second case held-back text is released before the special: stop strings do
not match across a special token.
"""
from __future__ import annotations

from transformer.tokenizer import StreamDecoder


class TextStream:
    def __init__(self, tok, stop: list[str] | tuple[str, ...] = (), specials_as_text: bool = True):
        self.decoder = StreamDecoder(tok)
        self.stop = [s for s in stop if s]
        self.specials = set(tok.special_tokens.values())
        self.specials_as_text = specials_as_text
        self.held = ""

    def push(self, token_id: int) -> tuple[str, int | None, bool]:
        """-> (text to send now, special id or None, whether a stop string just completed)."""
        if not self.specials_as_text and token_id in self.specials:
            return self.close(), token_id, False
        if not self.stop:  # nothing to hold back (held stays ""): the common case, kept cheap
            return self.decoder.push(token_id), None, False
        self.held += self.decoder.push(token_id)
        text, stopped = self._release(final=False)
        return text, None, stopped

    def close(self) -> str:
        """The end (or a special token): flush the decoder and release what is held, minus any stop."""
        self.held += self.decoder.flush()
        text, _ = self._release(final=True)
        return text

    def _release(self, final: bool) -> tuple[str, bool]:
        held = self.held
        hits = [i for i in (held.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.held = ""
            return held[:min(hits)], True
        keep = 0 if final else self._partial(held)
        self.held = held[len(held) - keep:] if keep else ""
        return held[:len(held) - keep], False

    def _partial(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best
