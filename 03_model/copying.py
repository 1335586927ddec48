"""Copy rules: what an action or an answer may write only by copying it from the conversation.

A small model knows *what* to do long before it can copy exactly: asked "what is 59700000 + 74328900?"
it writes `calc(597000000 + 74328900)` (one 0 too many), and asked about Vietnam it writes
`lookup(capital of V bynam)`. In the training traces every number of an answer appears earlier in
the conversation (the user wrote it or a tool returned it), every number of two or more digits in an
action does too (one-digit ones come from words: "cubed" -> `** 3`), every word of an action is the
user's or a tool's (a tool name, or a relation the lookup tool's description names), and every other
character of an action (brackets, operators, quotes) was written by someone; an answer after a tool
result that names something copies the name ("Antananarivo." after `Antananarivo`, never
"Antanarivo."; the small model writes both). So a chat turn is decoded under these rules, on top of
the protocol's grammar (grammar.py):

    where            what                           must be
    action, answer   a number (digits, maybe .dd)   a number of the conversation (actions: or one digit)
    action           a word (letters)               a word of the conversation (as written, or in lower
                                                    case) or of the request's tools (in lower case)
    action           any other character            one that the conversation or the tools contain
    action           its form                       name(argument), name one of the request's tools
    answer           a name: a capitalized word     one of those words
                     that starts (3 letters) like
                     a word of this turn's tool results
    action, answer   bytes that are not UTF-8       never

A rule checks text, not tokens: a number may be tokenized differently when it is copied. While a
number or word is still open (at the end of the text), it must be a prefix of an allowed one. The
engine checks its pick for each row in an action or answer; when the pick breaks a rule it takes the
most likely token that does not (the top CANDIDATES first, then the rest; if none does, it keeps its pick).
"""
from __future__ import annotations

import codecs
import re
from typing import Any, Iterable

import torch

NUMBER = re.compile(r"\d+(?:\.\d+)?")
WORD = re.compile(r"[^\W\d_]+")
CANDIDATES = 64  # tokens tried, most likely first, when the pick breaks a rule


def _prefixes(items: Iterable) -> set:
    return {s[:i] for s in items for i in range(1, len(s) + 1)}


def tools_text(tools: list[dict[str, Any]] | None) -> str:
    """The text of an OpenAI `tools` list: function names, descriptions and parameter texts."""
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k in ("name", "description") or isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(tools or [])
    return "\n".join(out)


NAME_HEAD = 3  # letters that make a capitalized word of an answer "start like" a word of a result


def chat_rule(tok, prompt: list[int], messages: list[dict], tools: list[dict] | None) -> "CopyRule":
    """A chat request's rule: the prompt's text (its special tokens left out), the tools' text
    (None without tools), and what the tools returned since the last user message."""
    specials = set(tok.special_tokens.values())
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = "\n".join(str(m.get("content") or "") for m in messages[last_user + 1:] if m.get("role") == "tool")
    pieces, run = [], []  # the texts between special tokens, kept apart (words must not run together)
    for t in prompt + [-1]:
        if t in specials or t == -1:
            pieces.append(tok.decode(run))
            run = []
        else:
            run.append(t)
    names = {t["function"]["name"] for t in tools or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)
             and isinstance(t["function"].get("name"), str)}
    return CopyRule("\n".join(p for p in pieces if p), tools_text(tools) if tools else None, results, names)


class CopyRule:
    """The rules for one request. context: the conversation's text (what the user and the tools
    wrote, and earlier assistant text); tools: the text of the request's tools (tools_text), or None
    to leave an action's words and characters unchecked (a request without tools); results: what
    the tools returned since the last user message; calls: the names an action may call (None: any
    form)."""

    def __init__(self, context: str, tools: str | None, results: str = "", calls: Iterable[str] | None = None):
        self.numbers = set(NUMBER.findall(context))
        self.number_prefixes = _prefixes(self.numbers)
        self.check_words = tools is not None
        said = WORD.findall(context)
        self.words = set(said) | {w.lower() for w in said} | set(WORD.findall((tools or "").lower()))
        self.word_prefixes = _prefixes(self.words)
        self.word_byte_prefixes = _prefixes([w.encode() for w in self.words])
        self.symbols = {c for c in context + (tools or "") if not c.isalnum()} - {"\ufffd"}
        self.calls = set(calls) if calls else None
        self.call_prefixes = _prefixes([f"{n}(" for n in self.calls or ()])
        self.names = set(WORD.findall(results))
        self.name_heads = {w[:NAME_HEAD] for w in self.names if len(w) >= NAME_HEAD}
        self.name_prefixes = _prefixes(self.names)
        self.name_byte_prefixes = _prefixes([w.encode() for w in self.names])

    def allows_bytes(self, data: bytes, action: bool, final: bool = False) -> bool:
        """allows() for the UTF-8 bytes of the tokens so far. A character cut at the end (a token may
        hold part of one) ends any number; in an action it must continue an allowed word."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data, final=final)
        cut = decoder.getstate()[0]
        if not cut:
            return self.allows(text, action, final)
        word = re.search(r"[^\W\d_]*$", text).group()
        checked = (self.word_byte_prefixes if action and self.check_words else
                   self.name_byte_prefixes if not action and self._name(word) else None)
        if checked is not None:  # the cut character goes on a checked word: the bytes must too
            if word.encode() + cut not in checked:
                return False
            text = text[:len(text) - len(word)]
        return self.allows(text, action, closed=True)  # what comes before the cut character is closed

    def allows(self, text: str, action: bool, final: bool = False, closed: bool | None = None) -> bool:
        """Can `text` (an action's or an answer's text so far) still follow the rules? final: the
        text is complete (the next token ends the action or the answer); closed: no number or word
        goes on past its end (default: final)."""
        if "\ufffd" in text:  # bytes that are no UTF-8: nobody wrote them
            return False
        if action and self.calls and not self._call_form(text, final):
            return False
        final = final if closed is None else closed
        for m in NUMBER.finditer(text):
            n, rest = m.group(), text[m.end():]
            if not final and (rest == "" or rest == "."):  # still open: "859" or "859." may go on
                if n + rest in self.number_prefixes or self._number(n, action):  # or it ends here
                    continue
                return False
            if not self._number(n, action):
                return False
        if action and self.check_words:
            if any(not c.isalnum() and c not in self.symbols for c in text):
                return False
            for m in WORD.finditer(text):
                w = m.group()
                ok = w in self.word_prefixes if (not final and m.end() == len(text)) else w in self.words
                if not ok:
                    return False
        if not action and self.names:
            for m in WORD.finditer(text):
                w = m.group()
                if self._name(w) and w not in (self.name_prefixes if not final and m.end() == len(text)
                                                else self.names):
                    return False
        return True

    def _call_form(self, text: str, final: bool) -> bool:
        """`name(` + argument + `)` (what transformer.chat.parse_action reads), name a tool's."""
        head, bracket, _ = text.partition("(")
        if not bracket:
            return not final and text in self.call_prefixes
        return head in self.calls and (not final or text.endswith(")"))

    def _name(self, w: str) -> bool:
        """Does an answer's word start like a word of this turn's results (and so must be one)?"""
        return len(w) >= NAME_HEAD and w[0].isupper() and w[:NAME_HEAD] in self.name_heads

    def _number(self, n: str, action: bool) -> bool:
        return n in self.numbers or (action and len(n) == 1)


class CopyChecker:
    """The engine's side: does a token keep a row's rule, and which one replaces a pick that does
    not. A row's `segment` is the bytes it wrote since its last special token."""

    def __init__(self, tok):
        self.tok = tok
        self.specials = frozenset(tok.special_tokens.values())

    def extend(self, segment: bytes, token: int) -> bytes:
        """A row's segment after `token` (a special token starts a new one)."""
        return b"" if token in self.specials else segment + self.tok.id_to_bytes(token)

    def keeps(self, rule: CopyRule, segment: bytes, action: bool, token: int) -> bool:
        if token in self.specials:  # the grammar lets only the closing tag through: the text is final
            return rule.allows_bytes(segment, action, final=True)
        return rule.allows_bytes(segment + self.tok.id_to_bytes(token), action)

    def best(self, rule: CopyRule, segment: bytes, action: bool, scores: torch.Tensor) -> int | None:
        """The most likely allowed token (scores: the row's masked logits (V,)) that keeps the rule;
        None if there is none."""
        allowed = scores.isfinite().tolist()
        top = scores.topk(min(CANDIDATES, scores.numel())).indices.tolist()
        for t in top:
            if allowed[t] and self.keeps(rule, segment, action, t):
                return t
        tried = set(top)  # rare: none of the top ones; try the rest, most likely first
        for t in scores.argsort(descending=True).tolist():
            if t not in tried and allowed[t] and self.keeps(rule, segment, action, t):
                return t
        return None
