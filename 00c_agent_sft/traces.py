"""Trace builders for agent SFT: one user turn per category, each tool step run for real.

`Generator(seed)` reads the KB, decides what is held out for the test split (whole entities here,
question templates in agent_sft.heldout) and writes turns with `arith`, `fact`, `miss`, `multi`,
`talk`, `error`, `follow_up`, `multi_turn`.
Each returns {"msgs", "expected" (one per user turn), "templates", "entities"} or None (draw again).
Every observation is the return value of agent.tools.calc / agent.tools.lookup on that action.
Flags: test (may use held-out things), ht (held-out template: True only / False never / None any),
he (held-out entities / test-only miss names), hn (one operand from the held-out digit band).
"""
from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import weakref
from collections import Counter
from pathlib import Path

from agent.tools import calc, lookup
from transformer.chat import past_turns_as_answers
from sft.data import load_conversations

from . import templates as T
from .heldout import Template, build_templates
from .invented import RELATIONS as INVENTED_RELATIONS, Inventor, fold
from .words import load_words

HERE = Path(__file__).resolve().parent
KB_FILE = HERE / "kb.json"
TRAIN_DIGITS, HELDOUT_DIGITS = (1, 2, 3, 4, 5, 6, 8, 9), 7
ROUND_SHARE = 0.15  # of multi-digit operands: trailing zeros, as people write them ("3000", "450000")
# of the other operands of 3+ digits: a run of one digit ("5469996"). Runs are what copying gets wrong
# (the model loses count: 12756555 -> 1275655); random operands hold too few of them
REPEAT_SHARE = 0.15
OPERATOR = re.compile(r" [-+*/] ")  # the operation of a multi-step template's expression
SEVEN = re.compile(r"(?<![\d.])\d{7}(?!\d)")  # an integer of the held-out digit band
# the eval's added facts (agent_sft.generate.ADDED_FACTS): never in any training text
FORBIDDEN = ["mongolia", "mascot", "oskar vell", "old mill tower", "novium"]
# entities the demo and the ten-query table use: always in training
PROTECTED = {"france", "hamlet", "gold", "light", "africa", "mercury", "venus", "earth", "mars", "water"}
N_INVENTED = 6000  # invented facts (agent_sft.invented) for the copying-only lookup traces
NUMERIC_RELATIONS, N_INVENTED_NUMERIC = ("atomic number", "number of moons", "year"), 300
# training only: shares of multi-step chains and KB misses built on invented entities (copying, not recall)
INVENTED_MULTI, INVENTED_MISS = 0.5, 0.3


def operations(tpl) -> str:
    """The operations of a template's expression, in order: the class that a balanced draw picks."""
    return "".join(OPERATOR.findall(tpl.expr))


def last_operation(expr: str) -> str:
    """The operation that a multi-step expression ends with: "{a} + {b}|{r} * {c}" -> "*"."""
    return OPERATOR.findall(expr)[-1].strip()


def number_step(expr: str, n: str) -> str:
    """The step after the first tool call, as a multi-step thought says it: "{x} * {k}", 88 -> "multiply by 88"."""
    if re.match(r"\{[kc]\} - ", expr):
        return T.NUMBER_STEPS["-from"].format(n=n)
    return T.NUMBER_STEPS[last_operation(expr)].format(n=n)


def split_key(key: str) -> tuple[str, str]:
    if key.startswith("number of moons of "):
        return "number of moons", key[len("number of moons of "):]
    rel, ent = key.split(" of ", 1)
    return rel, ent


def display(entity: str, relation: str) -> str:
    """How a question spells a KB entity: 'united kingdom' -> 'the United Kingdom', 'gold' -> 'gold'."""
    if entity in T.DISPLAY:
        return T.DISPLAY[entity]
    words = entity.split(" ")
    if relation in T.LOWER_RELATIONS:
        return " ".join(w.upper() if w in ("i", "ii") else w[0].upper() + w[1:] if w in T.PROPER_WORDS else w
                        for w in words)
    out = []
    for i, w in enumerate(words):
        if (i > 0 and w in T.SMALL_WORDS) or (i == 0 and w == "the" and relation not in T.TITLE_THE_RELATIONS):
            out.append(w)
        else:
            out.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(out)


class Turn:
    """One user turn being written: tool steps run the real tools as they are added."""

    def __init__(self, question: str, kb: Path):
        self.msgs: list[dict] = [{"role": "user", "content": question}]
        self.kb, self.tools, self.n = kb, [], 0

    def tool(self, thought: str, name: str, arg: str) -> str:
        self.n += 1
        obs = calc(arg) if name == "calc" else lookup(arg, kb_path=self.kb)
        call = {"id": f"call_{self.n}", "type": "function", "function": {
            "name": name, "arguments": json.dumps({"expression" if name == "calc" else "query": arg})}}
        self.msgs += [{"role": "assistant", "content": None, "reasoning_content": thought, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": call["id"], "content": obs}]
        self.tools.append(name)
        return obs

    def answer(self, text: str) -> list[dict]:
        self.msgs.append({"role": "assistant", "content": text})
        return self.msgs


class Generator:
    def __init__(self, seed: int = 0, kb_path: Path = KB_FILE):
        self.rng, self.kb_path = random.Random(seed), kb_path
        self.test_uses: Counter = Counter()  # template id -> test items written with it (generate.build counts)
        kb = json.loads(kb_path.read_text(encoding="utf-8"))
        self.facts: dict[str, list[str]] = {}
        for key in sorted(kb):
            rel, ent = split_key(key)
            self.facts.setdefault(rel, []).append(ent)
        self.values = {k.lower(): v for k, v in kb.items()}
        self._choose_heldout_entities(kb)
        self.tpl = build_templates(list(self.facts), random.Random(self.rng.random()))
        # misses: every 4th name is asked only in test
        self.miss_pool = {
            "country": T.MISSING_COUNTRIES, "relation": T.MISSING_RELATIONS, "place": T.INVENTED_ENTITIES,
            "work": T.INVENTED_WORKS, "element": T.INVENTED_ELEMENTS, "moons": T.MISSING_MOONS}
        self._invent_facts()
        # every name a question can hold, folded as lookup folds (invented ones: self.inventor.used)
        self.static_names = {fold(n) for n in [*self.entity_names.values(), *(x for pool in self.miss_pool.values()
                                                                              for x in pool)]}

    # ------------------------------------------------------------------ held-out choices
    def _choose_heldout_entities(self, kb: dict) -> None:
        rng = random.Random(self.rng.random())
        names = {e: display(e, r) for r, es in self.facts.items() for e in es}
        text = " | ".join([*kb.values(), *names.values(), *T.MISSING_COUNTRIES, *T.INVENTED_ENTITIES]).lower()
        eligible = []
        for rel in sorted(self.facts):
            if len(self.facts[rel]) < 8:
                continue
            for e in self.facts[rel]:
                bare = names[e].lower().removeprefix("the ")
                if e in PROTECTED or re.search(r"\d", bare) or len(bare) < 3 or \
                        len(re.findall(rf"(?<!\w){re.escape(bare)}(?!\w)", text)) != 1:
                    continue  # a number, or a name that occurs elsewhere: not cleanly separable
                eligible.append(e)
        eligible = sorted(set(eligible))
        self.heldout_entities = set(rng.sample(eligible, len(eligible) // 8))
        self.entity_names = names

    def _invent_facts(self) -> None:
        """The training-only invented KB, written to a temp file that the real lookup tool reads."""
        avoid = {n.lower().removeprefix("the ") for n in self.entity_names.values()}
        avoid |= {x.lower().removeprefix("the ") for pool in (T.MISSING_COUNTRIES, T.INVENTED_ENTITIES,
                  T.INVENTED_WORKS, T.INVENTED_ELEMENTS, T.MISSING_MOONS) for x in pool}
        # held-out test entities, test-only miss names and the eval's facts never occur in an invented
        # name or answer; real words from the training entities and answers may (spliced or whole)
        banned = {self.entity_names[e].lower().removeprefix("the ") for e in self.heldout_entities}
        banned |= {x.lower().removeprefix("the ") for pool in self.miss_pool.values() for i, x in enumerate(pool) if i % 4 == 3}
        banned |= set(FORBIDDEN)
        seen = [self.entity_names[e] for r, es in self.facts.items() for e in es if e not in self.heldout_entities]
        seen += [self.values[f"{r} of {e}"] for r, es in self.facts.items() for e in es if e not in self.heldout_entities]
        seen += [m["content"] for c in load_conversations() for m in c["messages"] if m.get("content")]  # chat words
        pieces = [w for w in re.findall(r"[^\W\d_]+", " ".join(seen)) if Inventor.clean_word(w, banned)]
        corpus = [w for w in load_words() if Inventor.clean_word(w, banned)]  # every word piece (agent_sft.words)
        inv = Inventor(random.Random(self.rng.random()), avoid, banned, pieces, corpus)
        self.invented: dict[str, str] = {}
        self.invented_parts: list[tuple[str, str]] = []
        self.invented_by_rel: dict[str, list[str]] = {}
        self.inventor = inv
        numeric = [rel for rel in NUMERIC_RELATIONS for _ in range(N_INVENTED_NUMERIC)]  # for lookup-then-calc chains
        while len(self.invented) < N_INVENTED + len(numeric):
            if len(self.invented) < len(numeric):
                rel = numeric[-1 - len(self.invented)]
            else:
                rel = self.rng.choice(sorted(self.facts)) if self.rng.random() < 0.5 else self.rng.choice(INVENTED_RELATIONS)
            ent = inv.entity(rel)
            if rel in T.IN_RELATIONS and " of " in ent:
                continue  # "longest river in the Isle of X" would be read as relation "longest river in the isle"
            self.invented[f"{rel} of {ent}"] = inv.value(rel)  # the KB's form; lookup reads "in" as "of"
            self.invented_parts.append((rel, ent))
            self.invented_by_rel.setdefault(rel, []).append(ent)
        tmp = tempfile.mkdtemp(prefix="kb_invented_")
        weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)  # gone with the generator
        self.invented_kb = Path(tmp) / "kb_invented.json"
        self.invented_kb.write_text(json.dumps(self.invented, ensure_ascii=False, indent=0), encoding="utf-8")

    def is_name(self, text: str, extra: frozenset[str] = frozenset()) -> bool:
        """Is `text` a name this generator puts into questions (a KB entity, a missing or invented one)?
        `extra`: more names (folded), e.g. the entities of lookups read back from a file."""
        low = fold(text)
        return low in self.inventor.used or low in self.static_names or low in extra

    def asked_with_heldout(self, question: str, extra: frozenset[str] = frozenset()) -> bool:
        """Could a held-out template have written this question (with this generator's names)?"""
        return self.tpl.asked_with_heldout(question, lambda s: self.is_name(s, extra))

    # ------------------------------------------------------------------ small pieces
    def choose_template(self, tpls: list, test: bool, heldout: bool | None, balance=None):
        """train/val: never a held-out template; test: held-out only if heldout else seen only (None: any).
        balance(template) -> a class: train/val draw each class equally often, however many templates it has."""
        def tpl(t):
            return t[0] if isinstance(t, tuple) else t
        pool = [t for t in tpls if not tpl(t).heldout] if not test or heldout is False else \
            [t for t in tpls if tpl(t).heldout] if heldout else tpls
        if test and heldout and pool:  # spread the test items evenly over the held-out templates
            fewest = min(self.test_uses[tpl(t).id] for t in pool)
            pool = [t for t in pool if self.test_uses[tpl(t).id] == fewest]
        if balance and not test and pool:
            cls = self.rng.choice(sorted({balance(tpl(t)) for t in pool}))
            pool = [t for t in pool if balance(tpl(t)) == cls]
        return self.rng.choice(pool) if pool else None

    def number(self, digits=TRAIN_DIGITS, decimal=0.12, negative=0.08) -> str:
        r = self.rng
        if r.random() < decimal:
            s = f"{r.randint(0, 999)}.{r.randint(1, 99)}".rstrip("0")
        else:
            d = r.choice(digits)
            s = str(r.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1))
            if d > 1 and r.random() < ROUND_SHARE:  # "3000 times 400": runs of zeros to copy exactly
                z = r.randint(1, d - 1)
                s = s[:-z] + "0" * z
            elif d > 2 and r.random() < REPEAT_SHARE:
                n, i = r.randint(2, min(d - 1, 6)), r.randint(0, d - 2)
                n = min(n, d - i)
                s = s[:i] + r.choice("123456789" if i == 0 else "0123456789") * n + s[i + n:]
        return "-" + s if r.random() < negative and s not in ("0", "0.") else s

    def entity(self, rel: str, test_entity: bool) -> str | None:
        pool = [e for e in self.facts.get(rel, []) if (e in self.heldout_entities) == test_entity]
        return self.rng.choice(pool) if pool else None

    def miss_name(self, kind: str, test: bool) -> str:
        pool = self.miss_pool[kind]
        return self.rng.choice([x for i, x in enumerate(pool) if (i % 4 == 3) == test])

    def weighted(self, weights: dict):
        keys = sorted(weights)
        return self.rng.choices(keys, [weights[k] for k in keys])[0]

    # ------------------------------------------------------------------ one user turn per category
    # each returns a turn dict (msgs, expected, templates, entities) or None to draw again
    def arith(self, test=False, ht=None, hn=False) -> dict | None:
        op = self.weighted({"add": .2, "sub": .18, "mul": .18, "div": .14, "pow": .1, "square": .04,
                            "cube": .03, "paren": .13})
        tpl = self.choose_template(self.tpl.arith_tpls[op], test, ht)
        num, r = self.number, self.rng
        if op in ("add", "sub", "mul"):
            v = {"a": num(), "b": num()}
        elif op == "div":
            if r.random() < 0.5:
                b = str(r.randint(1, 10 ** r.randint(1, 4)))
                v = {"a": str(int(b) * r.randint(1, 99999)), "b": b}
            else:
                v = {"a": num(), "b": num(decimal=0.05)}
        elif op == "pow":
            v = {"a": num((1, 2), 0.1, 0.1), "b": str(r.randint(2, 9))}
        else:
            v = {k: num((1, 2, 3, 4), 0.05, 0.05) for k in "abc"}
            if op in ("square", "cube"):
                v["a"] = num((1, 2, 3, 4) if op == "square" else (1, 2, 3), 0.1, 0.1)
        if hn:  # one operand from the held-out magnitude band
            k = "a" if op in ("pow", "square", "cube") else r.choice([k for k in "abc" if k in v and f"{{{k}}}" in tpl.text])
            v[k] = str(r.randint(10 ** (HELDOUT_DIGITS - 1), 10 ** HELDOUT_DIGITS - 1))
            if op == "pow":
                v["b"] = str(r.randint(2, 3))
        q, expr = tpl.text.format(**v), tpl.expr.format(**v)
        if bool(SEVEN.search(q)) != hn:
            return None
        turn = Turn(q, self.kb_path)
        obs = turn.tool(T.THOUGHT_CALC.format(expr=expr), "calc", expr)
        if obs.startswith("error") or len(obs) > 24:
            return None
        msgs = turn.answer(T.ANSWER_CALC.format(expr=expr, result=obs))
        return {"msgs": msgs, "expected": [{"kind": "number", "answer": obs, "tools": ["calc"]}],
                "templates": [tpl.id], "entities": []}

    def fact(self, test=False, ht=None, he=False) -> dict | None:
        rels = [rel for rel in sorted(self.facts) if not he or any(e in self.heldout_entities for e in self.facts[rel])]
        rel = self.rng.choices(rels, [len(self.facts[x]) ** 0.5 for x in rels])[0]
        ent = self.entity(rel, he)
        pick = self.choose_template(self.tpl.lookup_tpls[rel], test, ht)
        if ent is None or pick is None:
            return None
        tpl, keyfmt = pick
        name = self.entity_names[ent]
        q, key = tpl.text.format(E=name), keyfmt.format(E=name)
        turn = Turn(q, self.kb_path)
        obs = turn.tool(T.THOUGHT_LOOKUP.format(key=key), "lookup", key)
        want = self.values[f"{rel} of {ent}"]
        if obs != want:
            raise RuntimeError(f"lookup({key!r}) gave {obs!r}, the KB says {want!r}: fix display() or the KB")
        msgs = turn.answer(T.ANSWER_LOOKUP.format(key=key, value=obs))
        return {"msgs": msgs, "expected": [{"kind": "fact", "answer": obs, "tools": ["lookup"]}],
                "templates": [tpl.id], "entities": [ent]}

    def invented_fact(self, test=False, ht=None, **_) -> dict | None:
        """A lookup of an invented fact (training only): nothing to memorise, only to copy."""
        rel, ent = self.rng.choice(self.invented_parts)
        asked = self.ask_invented(rel, ent, test, ht)
        if asked is None:
            return None
        turn, key, obs, tid = asked
        if obs.startswith("not found"):
            raise RuntimeError(f"lookup({key!r}) missed the invented KB: {obs}")
        return {"msgs": turn.answer(T.ANSWER_LOOKUP.format(key=key, value=obs)), "templates": [tid],
                "entities": [], "kb": "invented", "expected": [{"kind": "fact", "answer": obs, "tools": ["lookup"]}]}

    def ask_invented(self, rel: str, ent: str, test: bool, ht) -> tuple[Turn, str, str, str] | None:
        """Ask for `rel` of an invented entity and run the real lookup on the invented KB ->
        (turn, key, observation, template id), or None when no template is free."""
        got = self.invented_question(rel, ent, test, ht)
        if got is None:
            return None
        q, key, tid = got
        turn = Turn(q, self.invented_kb)
        return turn, key, turn.tool(T.THOUGHT_LOOKUP.format(key=key), "lookup", key), tid

    def invented_question(self, rel: str, ent: str, test: bool, ht) -> tuple[str, str, str] | None:
        """(question, key, template id) asking for `rel` of an invented entity."""
        if rel in self.tpl.lookup_tpls:
            pick = self.choose_template(self.tpl.lookup_tpls[rel], test, ht)
            if pick is None:
                return None
            tpl, keyfmt = pick
        else:
            i = self.rng.randrange(len(T.FACT_FRAMES))
            tpl = Template(f"invented:f{i}", T.FACT_FRAMES[i].replace("{X}", f"the {rel} of {{E}}"))
            keyfmt = f"{rel} of {{E}}"
        return tpl.text.format(E=ent), keyfmt.format(E=ent), tpl.id

    def invented_miss(self, ht=None) -> dict | None:
        """A lookup of a fresh invented entity that no KB holds (training only): the name alone never
        tells a miss from a hit, only the observation does."""
        rel = self.rng.choice(sorted(self.facts) + INVENTED_RELATIONS)
        ent = self.inventor.entity(rel)
        if rel in T.IN_RELATIONS and " of " in ent:
            return None
        asked = self.ask_invented(rel, ent, False, ht)
        if asked is None:
            return None
        turn, key, obs, tid = asked
        if not obs.startswith("not found"):
            return None
        return {"msgs": turn.answer(T.ANSWER_MISS.format(key=key)), "templates": [tid], "entities": [],
                "kb": "invented", "expected": [{"kind": "miss", "answer": None, "tools": ["lookup"]}]}

    def miss(self, test=False, ht=None, he=False) -> dict | None:
        if not test and self.rng.random() < INVENTED_MISS:
            return self.invented_miss(ht)
        kind = self.weighted({"country": .35, "relation": .25, "place": .15, "work": .1, "element": .1, "moons": .05})
        rng = self.rng
        if kind == "relation":
            rel = self.miss_name("relation", he)
            ent = self.entity("capital", False)
            name = self.entity_names[ent]
        else:
            name = self.miss_name(kind, he)
            rel = rng.choice({"country": ["capital", "capital", "capital", "currency", "official language"],
                              "place": ["capital", "currency", "official language"],
                              "work": ["author", "composer", "painter"],
                              "element": ["chemical symbol", "atomic number"],
                              "moons": ["number of moons"]}[kind])
            ent = None
        pick = self.choose_template(self.tpl.lookup_tpls[rel], test, ht)
        if pick is None:
            return None
        tpl, keyfmt = pick
        q, key = tpl.text.format(E=name), keyfmt.format(E=name)
        turn = Turn(q, self.kb_path)
        obs = turn.tool(T.THOUGHT_LOOKUP.format(key=key), "lookup", key)
        if not obs.startswith("not found"):
            return None
        msgs = turn.answer(T.ANSWER_MISS.format(key=key))
        return {"msgs": msgs, "expected": [{"kind": "miss", "answer": None, "tools": ["lookup"]}],
                "templates": [tpl.id], "entities": [ent] if ent else []}

    def multi(self, test=False, ht=None, he=False) -> dict | None:
        kind = self.weighted({"pair": .45, "lcalc": .25, "chain": .3})
        rng = self.rng
        if kind == "chain":
            tpl = self.choose_template(self.tpl.chains, test, ht, balance=operations)
            v = {k: self.number((1, 2, 3), 0.05, 0.05) for k in "abc"}
            first, second = tpl.expr.split("|")
            turn = Turn(tpl.text.format(**v), self.kb_path)
            r1 = turn.tool(T.THOUGHT_PLAN_CALC.format(step=number_step(second, v["c"])), "calc", first.format(**v))
            expr = second.format(r=r1, c=v["c"])
            r2 = turn.tool(T.THOUGHT_CALC_NEXT.format(expr=expr), "calc", expr) if not r1.startswith("error") else r1
            if r2.startswith("error") or len(r2) > 24:
                return None
            return {"msgs": turn.answer(T.ANSWER_MULTI.format(result=r2)), "templates": [tpl.id], "entities": [],
                    "expected": [{"kind": "number", "answer": r2, "tools": ["calc"]}]}
        tpls, rels = (self.tpl.pairs, self.tpl.pair_rel) if kind == "pair" else (self.tpl.lcalcs, self.tpl.lcalc_rel)
        # each operation equally often: with more phrasings for sums, the model read "times" as a sum
        tpl = self.choose_template(tpls, test, ht, balance=operations)
        rel = rels[tpl.id]
        if not test and rng.random() < INVENTED_MULTI:  # invented entities: the invented KB's numbers
            e1, e2 = rng.sample(self.invented_by_rel[rel], 2)
            names, kb, values, ents = [e1, e2], self.invented_kb, self.invented, []
            if rel == "number of moons" and rng.random() < 0.25:  # a name no KB knows: the chain stops
                names[rng.randint(0, 1)] = self.inventor.entity(rel)
        else:
            held = [e for e in self.facts[rel] if e in self.heldout_entities]
            pool = self.facts[rel] if he else [e for e in self.facts[rel] if e not in self.heldout_entities]
            e1, e2 = rng.sample(pool, 2)
            if he and [e for e in held if e != e2]:  # at least one entity never seen in training
                e1 = rng.choice([e for e in held if e != e2])
            names, kb, values, ents = [self.entity_names[e1], self.entity_names[e2]], self.kb_path, self.values, [e1, e2]
            if rel == "number of moons" and rng.random() < 0.25:  # a planet the KB does not know
                names[rng.randint(0, 1)] = self.miss_name("moons", test and rng.random() < 0.5)
        if rel == "year":
            y1, y2 = (int(values[f"year of {e}"]) for e in (e1, e2))
            if y1 == y2:
                return None
            if y1 > y2:
                names, e1, e2, ents = names[::-1], e2, e1, ents[::-1]
        k = int(values[f"year of {e1}"]) + rng.randint(1, 300) if rel == "year" else rng.randint(2, 99)
        q = tpl.text.format(E1=names[0], E2=names[1], E=names[0], k=k)
        turn, obs, tools = Turn(q, kb), [], []
        extra = {"kb": "invented"} if kb != self.kb_path else {}
        ents = ents if kind == "pair" else ents[:1]
        for i, name in enumerate(names[:2 if kind == "pair" else 1]):
            key = f"{rel} of {name}"
            plan = T.THOUGHT_PLAN_PAIR.format(step=T.PAIR_STEPS[last_operation(tpl.expr)]) \
                if kind == "pair" else T.THOUGHT_PLAN_LOOKUP.format(step=number_step(tpl.expr, str(k)))
            obs.append(turn.tool(T.THOUGHT_LOOKUP_NEXT if i else plan, "lookup", key))
            if obs[-1].startswith("not found"):
                return {"msgs": turn.answer(T.ANSWER_MISS.format(key=key)), "templates": [tpl.id], "entities": ents,
                        "expected": [{"kind": "miss", "answer": None, "tools": ["lookup"]}], **extra}
        expr = tpl.expr.format(x=obs[0], y=obs[-1], k=k)
        result = turn.tool(T.THOUGHT_CALC_NEXT.format(expr=expr), "calc", expr)
        if result.startswith("error"):
            return None
        return {"msgs": turn.answer(T.ANSWER_MULTI.format(result=result)), "templates": [tpl.id], "entities": ents,
                "expected": [{"kind": "number", "answer": result, "tools": ["lookup", "calc"]}], **extra}

    def talk(self, test=False, ht=None, **_) -> dict | None:
        tpl = self.choose_template(self.tpl.talk_tpls, test, ht)
        msgs = [{"role": "user", "content": tpl.text}, {"role": "assistant", "content": tpl.expr}]
        return {"msgs": msgs, "expected": [{"kind": "chat", "answer": None, "tools": []}],
                "templates": [tpl.id], "entities": []}

    def error(self, test=False, ht=None, hn=False) -> dict | None:
        r = self.rng
        if r.random() < 0.75:
            tpl = self.choose_template(self.tpl.arith_tpls["div"], test, ht)
            v = {"a": self.number(), "b": "0"}
        else:
            tpl = self.choose_template(self.tpl.arith_tpls["pow"], test, ht)
            v = {"a": str(r.randint(1000, 999999)), "b": str(r.randint(20, 99))}
        if hn:
            v["a"] = str(r.randint(10 ** (HELDOUT_DIGITS - 1), 10 ** HELDOUT_DIGITS - 1))
        expr = tpl.expr.format(**v)
        turn = Turn(tpl.text.format(**v), self.kb_path)
        obs = turn.tool(T.THOUGHT_CALC.format(expr=expr), "calc", expr)
        if obs not in T.ANSWER_ERRORS:
            return None
        key = "divide by zero" if "zero" in obs else "too large"
        return {"msgs": turn.answer(T.ANSWER_ERRORS[obs]), "templates": [tpl.id], "entities": [],
                "expected": [{"kind": "error", "answer": key, "tools": ["calc"]}]}

    def follow_up(self, prev: dict, test=False, ht=None) -> dict | None:
        r = prev["expected"][-1]["answer"]
        tpl = self.choose_template(self.tpl.follow, test, ht, balance=lambda t: t.id.split(":")[1])
        k = self.rng.randint(2, 20)
        expr = tpl.expr.format(r=r, k=k)
        turn = Turn(tpl.text.format(k=k), self.kb_path)
        obs = turn.tool(T.THOUGHT_CALC.format(expr=expr), "calc", expr)
        if obs.startswith("error") or len(obs) > 24:
            return None
        return {"msgs": turn.answer(T.ANSWER_CALC.format(expr=expr, result=obs)), "templates": [tpl.id],
                "entities": [], "expected": [{"kind": "number", "answer": obs, "tools": ["calc"]}]}

    def multi_turn(self, test=False, **_) -> dict | None:
        turns: list[dict] = []
        for i in range(2 if self.rng.random() < 0.7 else 3):
            prev = turns[-1] if turns else None
            can_follow = prev and prev["expected"][-1]["kind"] == "number" and re.fullmatch(r"-?\d{1,9}", prev["expected"][-1]["answer"])
            # follow-ups (the one kind that needs the history) drawn 5x as often in training as in test
            kind = self.weighted({"arith": .3, "fact": .3, "talk": .2, "miss": .1,
                                  "follow": 0 if not can_follow else .4 if test else 2.0,
                                  "invented_fact": 0 if test else .3})
            he = test and self.rng.random() < 0.3
            t = self.follow_up(prev, test) if kind == "follow" else \
                getattr(self, kind)(test=test, **({"he": he} if kind in ("fact", "miss") else {}))
            if t is None:
                return None
            turns.append(t)
        invented = any(t.get("kb") for t in turns)
        if invented and any(not t.get("kb") and "lookup" in t["expected"][-1]["tools"] for t in turns):
            return None  # the lookups of one conversation must read one KB
        # past turns as the agent sends them (question and answer); their answers are context, not lessons:
        # learned, "The answer is 1441." with no calc before it would teach answering without the tool
        msgs = past_turns_as_answers([m for t in turns for m in t["msgs"]])
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs = [{**m, "weight": 0} if m["role"] == "assistant" and i < last_user else m for i, m in enumerate(msgs)]
        return {"msgs": msgs, "expected": [e for t in turns for e in t["expected"]],
                **({"kb": "invented"} if invented else {}),
                "templates": [x for t in turns for x in t["templates"]], "entities": [x for t in turns for x in t["entities"]]}
