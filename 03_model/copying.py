"""Copy rules: what an action or an answer may write only by copying it from the conversation.

A small model knows *what* to do long before it can copy exactly: asked "what is 59700000 + 74328900?"
it writes `calc(597000000 + 74328900)` (one 0 too many), and asked about Vietnam it writes
`lookup(capital of V bynam)`. In the training traces every number of an answer appears earlier in
the conversation (the user wrote it or a tool returned it), every number of two or more digits in an
action does too (one-digit ones come from words: "cubed" -> `** 3`), every word of an action is the
user's or a tool's (a tool name, or a relation the lookup tool's description names), and every other
character of an action (brackets, operators, quotes) was written by someone; a lookup's argument is
a piece of its description ("capital of ") and then one piece of what the user wrote ("Japan"); an
answer after a tool result that names something copies the name ("Antananarivo." after
`Antananarivo`, never "Antanarivo."; the small model writes both) to the result's end, and has one
of a few shapes around the last result, by its tool and kind ("Paris." after a lookup, "The answer
is 6912." after calc, "Sorry, I don't know that." after a miss: reporting.py). So a chat turn is
decoded under these rules, on top of the protocol's grammar (grammar.py):

    where            what                           must be
    action, answer   a number (digits, maybe .dd,   a number of the conversation, with its sign
                     maybe a minus right before)    (actions: or one digit)
    action           a word (letters)               a word of the conversation (as written, or in lower
                                                    case) or of the request's tools (in lower case)
    action           any other character            one that the conversation or the tools contain
    action           its form                       name(argument), name one of the request's
                                                    tools, the argument's brackets balanced
    action           an argument with words         a piece of the tools' text (lower case), then one
                                                    piece of what the user or a tool wrote (not the
                                                    assistant's own thoughts and answers; starting and ending
                                                    where its words do; compared in lower case) that
                                                    neither starts with the word the first piece
                                                    ends with ("of of") nor holds its words again,
                                                    and does not end inside a name (before a
                                                    capitalized word, "of" or "the")
    answer           a name: a capitalized word     one of those words
                     that starts (3 letters) like
                     a word of this turn's tool results
    answer after     a copy of a result             goes on exactly to the result's end
    tool results     (with answer shapes)           one of the answers the shapes make of the last
                                                    result and its tool (the rules above then hold
                                                    by themselves)
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

from .reporting import last_result, shaped_answers

NUMBER = re.compile(r"\d+(?:\.\d+)?")
WORD = re.compile(r"[^\W\d_]+")
CANDIDATES = 64  # tokens tried, most likely first, when the pick breaks a rule


def _prefixes(items: Iterable) -> set:
    return {s[:i] for s in items for i in range(1, len(s) + 1)}


def _sign(text: str, m: re.Match) -> str:
    """"-" if the number `m` of `text` is negative: a minus right before it that does not follow a
    letter, digit or closing bracket ("-42", "(-42", "3 * -42"; not "5-42" or "5 - 42")."""
    i = m.start()
    return "-" if i and text[i - 1] == "-" and (i == 1 or not (text[i - 2].isalnum() or text[i - 2] in ").")) else ""


def _signed(text: str) -> set[str]:
    return {_sign(text, m) + m.group() for m in NUMBER.finditer(text)}


def _balanced(arg: str, final: bool) -> bool:
    """An argument's brackets: never more closed than opened, and (final: without the action's own
    closing bracket) all closed. Not final, one more may close: the action's own."""
    depth = 0
    for i, c in enumerate(arg[:-1] if final else arg):
        depth += (c == "(") - (c == ")")
        if depth < 0 and not (not final and i == len(arg) - 1):
            return False
    return depth == 0 if final else True


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


# a copied piece does not end where a name goes on: before a capitalized word ("In the Hall of the
# Mountain" + " King") or before "of" or "the" ("A Brief History" + " of Time")
NAME_GOES_ON = r"(?! [A-Z]| (?:of|the)\b)"
NAME_HEAD = 3  # letters that make a capitalized word of an answer "start like" a word of a result


def chat_rule(tok, prompt: list[int], messages: list[dict], tools: list[dict] | None,
              shapes: dict | None = None) -> "CopyRule":
    """A chat request's rule: the prompt's text (its special tokens left out), the tools' text
    (None without tools), what the tools returned since the last user message and, with the
    checkpoint's answer shapes (reporting.py), the answers they allow after the last of it."""
    specials = set(tok.special_tokens.values())
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = [str(m.get("content") or "") for m in messages[last_user + 1:] if m.get("role") == "tool"]
    pieces, run = [], []  # the texts between special tokens, kept apart (words must not run together)
    for t in prompt + [-1]:
        if t in specials or t == -1:
            pieces.append(tok.decode(run))
            run = []
        else:
            run.append(t)
    names = {t["function"]["name"] for t in tools or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)
             and isinstance(t["function"].get("name"), str)}
    last = last_result(messages)
    answers = shaped_answers(shapes, *last) if shapes and last else None
    # an argument's piece is what the user (or the system, or a tool) wrote: a second question copied
    # "the answer" from the first turn's "The answer is 556666." into lookup(atomic number of the answer)
    quoted = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") in ("system", "user", "tool"))
    return CopyRule("\n".join(p for p in pieces if p), tools_text(tools) if tools else None, "\n".join(results), names,
                    answers, quoted=quoted)


class CopyRule:
    """The rules for one request. context: the conversation's text (what the user and the tools
    wrote, and earlier assistant text); tools: the text of the request's tools (tools_text), or None
    to leave an action's words and characters unchecked (a request without tools); results: what
    the tools returned since the last user message; calls: the names an action may call (None: any
    form); answers: the only answers allowed (shaped_answers), or None; quoted: what an argument's
    piece is copied from, the user's and the tools' text (None: the whole context)."""

    def __init__(self, context: str, tools: str | None, results: str = "", calls: Iterable[str] | None = None,
                 answers: Iterable[str] | None = None, quoted: str | None = None):
        self.numbers = set(NUMBER.findall(context))
        self.signed = _signed(context)  # with their signs: "-42" as the user or a tool wrote it
        self.signed_prefixes = _prefixes(self.signed)
        self.check_words = tools is not None
        said = WORD.findall(context)
        self.words = set(said) | {w.lower() for w in said} | set(WORD.findall((tools or "").lower()))
        self.word_prefixes = _prefixes(self.words)
        self.word_byte_prefixes = _prefixes([w.encode() for w in self.words])
        self.symbols = {c for c in context + (tools or "") if not c.isalnum()} - {"\ufffd"}
        self.calls = set(calls) if calls else None
        self.call_prefixes = _prefixes([f"{n}(" for n in self.calls or ()])
        # an argument with words is a piece of the tools' text (lower case), then a piece of the
        # conversation's text (compared in lower case): _one_piece
        self.tools_said = (tools or "").lower()
        self.quoted = context if quoted is None else quoted  # where an argument's piece comes from
        self.quoted_lower = self.quoted.lower()
        # copies go on: in an answer, a word of a result is followed by the word that follows it there
        # (or by anything, where it ends a result)
        self.follows: dict[str, set[tuple[str, str]] | None] = {}  # word -> {(text between, next word)}
        for line in results.split("\n"):
            seq = list(WORD.finditer(line))
            for m, nxt in zip(seq, seq[1:] + [None]):
                w = m.group()
                if nxt is None:
                    self.follows[w] = None
                elif self.follows.get(w, set()) is not None:
                    self.follows.setdefault(w, set()).add((line[m.end():nxt.start()], nxt.group()))
        self.names = set(WORD.findall(results))
        self.answers = {x.encode() for x in answers} if answers else None
        self.answer_prefixes = _prefixes(self.answers or ())
        self.name_heads = {w[:NAME_HEAD] for w in self.names if len(w) >= NAME_HEAD}
        self.name_prefixes = _prefixes(self.names)
        self.name_byte_prefixes = _prefixes([w.encode() for w in self.names])

    def allows_bytes(self, data: bytes, action: bool, final: bool = False) -> bool:
        """allows() for the UTF-8 bytes of the tokens so far. A character cut at the end (a token may
        hold part of one) ends any number; in an action it must continue an allowed word."""
        if self.answers is not None and not action:
            return data in (self.answers if final else self.answer_prefixes)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data, final=final)
        cut = decoder.getstate()[0]
        if not cut:
            return self.allows(text, action, final)
        word = re.search(r"[^\W\d_]*$", text).group()
        checked = ([self.word_byte_prefixes] if action and self.check_words else [] if action else
                   [self.name_byte_prefixes] * self._name(word))
        if checked:  # the cut character goes on a checked word: the bytes must too
            if any(word.encode() + cut not in c for c in checked):
                return False
            text = text[:len(text) - len(word)]
        return self.allows(text, action, closed=True)  # what comes before the cut character is closed

    def allows(self, text: str, action: bool, final: bool = False, closed: bool | None = None) -> bool:
        """Can `text` (an action's or an answer's text so far) still follow the rules? final: the
        text is complete (the next token ends the action or the answer); closed: no number or word
        goes on past its end (default: final)."""
        if "\ufffd" in text:  # bytes that are no UTF-8: nobody wrote them
            return False
        if self.answers is not None and not action:
            return text.encode() in (self.answers if final else self.answer_prefixes)
        if action and self.calls and not self._call_form(text, final):
            return False
        given_final, final = final, final if closed is None else closed
        for m in NUMBER.finditer(text):
            n, rest = _sign(text, m) + m.group(), text[m.end():]
            if not final and (rest == "" or rest == "."):  # still open: "859" or "859." may go on
                if n + rest in self.signed_prefixes or self._number(n, action):  # or it ends here
                    continue
                return False
            if not self._number(n, action):
                return False
        if action and self.calls and not _balanced(text.partition("(")[2], final):
            return False
        if action and self.check_words:
            if any(not c.isalnum() and c not in self.symbols for c in text):
                return False
            for m in WORD.finditer(text):
                w = m.group()
                ok = w in self.word_prefixes if (not final and m.end() == len(text)) else w in self.words
                if not ok:
                    return False
            if self.calls and not self._one_piece(text, final):
                return False
        if not action and self.names:
            return self._copies(text, final, not given_final)
        return True

    def _copies(self, text: str, final: bool, open_end: bool) -> bool:
        """An answer after tool results: names are copied, and a copy goes on to its result's end."""
        words = list(WORD.finditer(text))
        for i, m in enumerate(words):
            w, last = m.group(), not final and m.end() == len(text)
            if self._name(w) and w not in (self.name_prefixes if last else self.names):
                return False
            nexts = self.follows.get(words[i - 1].group()) if i else None
            between = text[words[i - 1].end():m.start()] if i else ""
            if nexts is not None and not any(b == between and (n.startswith(w) if last else n == w) for b, n in nexts):
                return False
        # a copy does not stop inside its result: what follows its last word is on the way to the next
        nexts = self.follows.get(words[-1].group()) if words else None
        after = text[words[-1].end():] if words else ""
        return nexts is None or (open_end and any(b.startswith(after) for b, _ in nexts))

    def _one_piece(self, text: str, final: bool) -> bool:
        """Is the argument of `text` (name(argument)) a piece of the tools' text, then one piece of the
        conversation? An argument without words (an expression) is not checked."""
        arg = text.partition("(")[2]
        if final:
            return self._piece(arg[:-1], True)
        # a closing bracket may be the last character of the action (or a copied one)
        return self._piece(arg, False) or (arg.endswith(")") and self._piece(arg[:-1], True))

    def _piece(self, arg: str, final: bool) -> bool:
        if not WORD.search(arg):
            return True
        for cut in [0] + [i + 1 for i, c in enumerate(arg) if c == " "] + [len(arg)]:
            head, rest = arg[:cut], arg[cut:].lower()
            if head.lower() != head or head not in self.tools_said:
                return False  # a longer head is no piece either
            if not rest:
                return not final  # the copied piece has not started yet
            # the copied piece starts where a word or number of the conversation does (and, when
            # final, ends where one does, but not inside a name: NAME_GOES_ON)
            if rest[0].isalnum() and (re.search(r"(?<!\w)(?i:" + re.escape(rest) + r")(?!\w)" + NAME_GOES_ON, self.quoted)
                                      if final else re.search(r"(?<!\w)" + re.escape(rest), self.quoted_lower)) \
                    and self._seam(head, rest, final):
                return True
        return False

    @staticmethod
    def _seam(head: str, rest: str, final: bool) -> bool:
        """Where the two pieces meet, the copied one neither repeats the word the tools' piece ends
        with ("atomic number of of zinc") nor holds its words again ("year of the year of the")."""
        said = head.split()
        first = re.match(r"\w+(?=\W)" + (r"|\w+$" if final else ""), rest)
        if said and first and first.group() == said[-1]:
            return False
        return len(said) < 2 or not re.search(r"(?<!\w)" + re.escape(" ".join(said)) + (r"(?!\w)" if final else r"(?=\W)"), rest)

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
        """n: a number with its sign ("-42")."""
        return n in self.signed or (action and len(n.lstrip("-")) == 1)


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
