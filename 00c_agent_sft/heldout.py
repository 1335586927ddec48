"""Question templates and which of them the test split holds out (used by agent_sft.traces).

A template is a question pattern ("Who composed {E}?", "What is {a} plus {b}?"). `build_templates`
makes every template from agent_sft.templates and marks a share of each group as held out: those
are only ever asked in the test split. A held-out template is a new PHRASING, never a new task or a
new word: it asks for an expression and relation that a training template of its group also asks
for, and every word of it occurs in some training template. "Who composed X?" with no other
"composed" in training, or the only "subtract, then divide" chain, would test English or a task the
model was never given, not generalisation from the traces.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from typing import Callable

from . import templates as T

N_PLACEHOLDER = r"-?\d+(?:\.\d+)?"
NUMBER_SLOTS = ("{a}", "{b}", "{c}", "{k}")
# the demo's phrasings and the ten-query table's: always in training
DEMO_QUESTIONS = {"Who wrote {E}?", "Who is the author of {E}?", "Which city is the capital of {E}?",
                  "Tell me {E}'s capital.", "How many moons does {E} have?"}


def template_words(text: str) -> list[str]:
    """The words and symbols of a question template, placeholders left out: "Who composed {E}?" ->
    ["who", "composed", "?"]."""
    return [w for w in re.findall(r"\{\w+\}|\w+|[^\w\s]", text.lower()) if not w.startswith("{")]


class Template:
    """A question pattern with placeholders {a} {b} {c} {k} (numbers) and {E} {E1} {E2} (entities)."""

    def __init__(self, tid: str, text: str, expr: str = "", heldout: bool = False):
        self.id, self.text, self.expr, self.heldout = tid, text, expr, heldout
        self.parts = [p for p in re.split(r"(\{[a-zA-Z0-9]+\})", text) if p]
        # a quick over-approximation: ".+" for an entity also reads "What is the atomic number of X plus 5?"
        # as "What is the atomic number of {E}?"; `produces` is the exact test
        self.pattern = "".join((N_PLACEHOLDER if p in NUMBER_SLOTS else ".+") if _slot(p) else re.escape(p)
                               for p in self.parts)

    def produces(self, text: str, is_name: Callable[[str], bool]) -> bool:
        """Could this template have written `text`, each entity slot filled with a name (`is_name`) and
        each number slot with a number? Tries every split of the text over the slots."""
        def match(k: int, i: int) -> bool:
            if k == len(self.parts):
                return i == len(text)
            p = self.parts[k]
            if not _slot(p):
                return text.startswith(p, i) and match(k + 1, i + len(p))
            fits = (lambda s: re.fullmatch(N_PLACEHOLDER, s) is not None) if p in NUMBER_SLOTS else is_name
            return any(fits(text[i:j]) and match(k + 1, j) for j in range(i + 1, len(text) + 1))
        return match(0, 0)


def follow_ups() -> list[Template]:
    """Follow-up templates ("What is that times {k}?" -> "{r} * {k}"): each arithmetic core (in
    T.FOLLOW_FRAMES) and imperative of T.FOLLOW_OPS with "that" (the last result, {r}) for its first
    operand and {k} for the second; an imperative also with "Now" before it."""
    def fill(text: str, that: str) -> str:
        return text.replace("{a}", that).replace("{b}", "{k}")
    out = []
    for op in T.FOLLOW_OPS:
        phrasings = [(frame.replace("{X}", fill(core, "that")), fill(expr, "{r}"))
                     for frame in T.FOLLOW_FRAMES for core, expr in T.ARITH_CORES[op]]
        for text, expr in T.ARITH_IMPERATIVES[op]:
            phrasings.append((fill(text, "that"), fill(expr, "{r}")))
            if not text.startswith("Please"):
                phrasings.append((fill("Now " + text[0].lower() + text[1:], "that"), fill(expr, "{r}")))
        out += [Template(f"follow:{op}:{i}", text, expr) for i, (text, expr) in enumerate(phrasings)]
    return out


def _slot(part: str) -> bool:
    return re.fullmatch(r"\{[a-zA-Z0-9]+\}", part) is not None


class QuestionTemplates:
    """Every question template by kind; `heldout_templates` (ids) and `heldout_regex` (does a question
    fully match a held-out template?) say what the test split holds out."""

    arith_tpls: dict[str, list[Template]]               # operation -> templates
    lookup_tpls: dict[str, list[tuple[Template, str]]]  # relation -> (template, KB key pattern)
    pairs: list[Template]                               # two lookups then a calc
    lcalcs: list[Template]                              # one lookup then a calc
    chains: list[Template]                              # calc then calc
    follow: list[Template]                              # multi-turn follow-ups on the last result
    talk_tpls: list[Template]                           # small talk (expr = the answer)
    pair_rel: dict[str, str]                            # template id -> relation looked up
    lcalc_rel: dict[str, str]
    heldout_templates: set[str]
    heldout_regex: re.Pattern                           # fullmatch: maybe asked with a held-out template
    heldout: list[Template]

    def asked_with_heldout(self, text: str, is_name: Callable[[str], bool]) -> bool:
        """Is `text` a held-out template with names (`is_name`) and numbers filled in?"""
        return self.heldout_regex.fullmatch(text) is not None and \
            any(t.produces(text, is_name) for t in self.heldout if re.fullmatch(t.pattern, text))


def build_templates(relations: list[str], rng: random.Random) -> QuestionTemplates:
    """All templates for these KB relations (plus the relations the KB lacks), with held-out ones marked."""
    q = QuestionTemplates()
    # (templates, share to hold out, never hold out, what a template means: the expression it asks for)
    groups: list[tuple[list[Template], float, Callable[[Template], bool], Callable[[Template], object]]] = []

    def group(tpls: list[Template], frac: float, keep=lambda t: False, meaning=lambda t: t.expr) -> list[Template]:
        groups.append((tpls, frac, keep, meaning))
        return tpls

    always = lambda t: any(t.text.startswith(f.replace("{X}", "")) for f in T.ALWAYS_TRAIN_FRAMES)
    q.arith_tpls = {}
    for op, cores in T.ARITH_CORES.items():
        tpls = [Template(f"arith:{op}:f{i}:c{j}", frame.replace("{X}", core), expr)
                for i, frame in enumerate(T.NOUN_FRAMES) for j, (core, expr) in enumerate(cores)]
        tpls += [Template(f"arith:{op}:imp{j}", text, expr) for j, (text, expr) in enumerate(T.ARITH_IMPERATIVES[op])]
        q.arith_tpls[op] = group(tpls, 0.15, always)
    q.lookup_tpls = {}
    for rel in sorted(relations) + T.MISSING_RELATIONS:
        join = "in" if rel in T.IN_RELATIONS else "of"
        tpls = [(Template(f"lookup:{rel}:f{i}", frame.replace("{X}", f"the {rel} {join} {{E}}")), f"{rel} {join} {{E}}")
                for i, frame in enumerate(T.FACT_FRAMES)]
        tpls += [(Template(f"lookup:{rel}:q{j}", text), key)
                 for j, (text, key) in enumerate(T.RELATION_QUESTIONS.get(rel, []))]
        group([t for t, _ in tpls], 0.15, lambda t: always(t) or t.text in DEMO_QUESTIONS)
        q.lookup_tpls[rel] = tpls
    q.pair_rel = {f"pair{i}": rel for i, (_, rel, _) in enumerate(T.LOOKUP_PAIRS)}
    q.pairs = group([Template(f"pair{i}", text, expr) for i, (text, _, expr) in enumerate(T.LOOKUP_PAIRS)], 0.2,
                    lambda t: "moons" in t.text and "together" in t.text, lambda t: (q.pair_rel[t.id], t.expr))
    q.lcalc_rel = {f"lcalc{i}": rel for i, (_, rel, _) in enumerate(T.LOOKUP_CALCS)}
    q.lcalcs = group([Template(f"lcalc{i}", text, expr) for i, (text, _, expr) in enumerate(T.LOOKUP_CALCS)], 0.2,
                     meaning=lambda t: (q.lcalc_rel[t.id], t.expr))
    q.chains = group([Template(f"chain{i}", text, f"{e1}|{e2}") for i, (text, e1, e2) in enumerate(T.CALC_CHAINS)], 0.2)
    q.follow = group(follow_ups(), 0.2)

    in_training = Counter(w for tpls, *_ in groups for t in tpls for w in template_words(t.text))
    for tpls, frac, keep, meaning in groups:
        cands = [t for t in tpls if not keep(t)]
        want = max(1, round(frac * len(cands)))
        meanings = Counter(meaning(t) for t in tpls)
        for t in rng.sample(cands, len(cands)):
            words = Counter(template_words(t.text))
            if want and meanings[meaning(t)] > 1 and all(in_training[w] > n for w, n in words.items()):
                t.heldout, want = True, want - 1
                in_training.subtract(words)
                meanings[meaning(t)] -= 1
    q.talk_tpls = [Template(f"talk{i}:{j}", text, a) for i, (texts, a) in enumerate(T.SMALL_TALK)
                   for j, text in enumerate(texts)]
    q.talk_tpls += [Template(f"talktest{i}", text, a, heldout=True) for i, (text, a) in enumerate(T.SMALL_TALK_TEST)]

    held = [t for ts in [*q.arith_tpls.values(), q.pairs, q.lcalcs, q.chains, q.follow, q.talk_tpls]
            for t in ts if t.heldout]
    held += [t for ts in q.lookup_tpls.values() for t, _ in ts if t.heldout]
    q.heldout, q.heldout_templates = held, {t.id for t in held}
    q.heldout_regex = re.compile("|".join(f"(?:{t.pattern})" for t in held))
    return q
