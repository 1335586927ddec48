"""Generate the agent-SFT traces: train / val / test JSONL, every observation from the real tool.

    python -m agent_sft.generate                     # seed 0 -> 00c_agent_sft/data/{train,val,test}.jsonl
    python -m agent_sft.generate --n-train 120000 --out runs/gpu/traces \
        --exclude 00c_agent_sft/data/test.jsonl     # more data for the GPU presets, scored on the committed test

A record is {"messages": [...], "category", "split", "templates": [ids], "entities": [KB entities]};
train records add "text", the conversation as plain text for a mixed pretraining corpus;
val/test records add "expected" (one dict per user turn: kind number|fact|miss|chat|error, answer,
tools) and test records "heldout" (what in them never occurs in train/val: template, entity,
number). Categories: arithmetic, arithmetic_oor (test only), lookup, kb_miss, multi_step,
small_talk, multi_turn, tool_error. The builders live in agent_sft.traces.

Held out for test: whole KB entities, operands of 7 digits (train/val operands have 1-6 or 8-9),
and question templates. Train/val questions that match a held-out template, hold a 7-digit number
or name an eval-only fact are dropped here, so the guarantee holds by construction (and
tests/test_agent_sft_data.py checks the files). Same seed -> byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import regex

from transformer.tokenizer import GPT4_PATTERN

from .traces import FORBIDDEN, HERE, SEVEN, Generator

# lookup_invented: facts about invented entities (agent_sft.invented), train/val only: they teach the
# copying that held-out entities and facts added to the KB later need
# multi_turn: a conversation's last turn is one of the other kinds, asked further into the window (the CPU model
# copied worse there: 30% against 14% of the mix took multi-turn 86.0 -> 91.7%, reports/agent_cpu_runs/history/)
TRAIN_MIX = {"arithmetic": 0.13, "lookup": 0.13, "lookup_invented": 0.16, "kb_miss": 0.07, "multi_step": 0.15,
             "small_talk": 0.03, "multi_turn": 0.30, "tool_error": 0.03}
TEST_CATEGORIES = ["arithmetic", "arithmetic_oor", "lookup", "kb_miss", "multi_step", "small_talk",
                   "multi_turn", "tool_error"]
# facts the eval adds to a COPY of the KB: never in training, answered only through the lookup tool
ADDED_FACTS = {"capital of mongolia": "Ulaanbaatar", "favourite colour of the project mascot": "teal",
               "author of the lantern of oskar vell": "Mira Castellan", "height of the old mill tower": "42 metres",
               "chemical symbol of novium": "Nv"}
ADDED_QUESTIONS = [("What is the capital of Mongolia?", "capital of mongolia"),
                   ("Which city is the capital of Mongolia?", "capital of mongolia"),
                   ("What is the favourite colour of the project mascot?", "favourite colour of the project mascot"),
                   ("Who wrote The Lantern of Oskar Vell?", "author of the lantern of oskar vell"),
                   ("How tall is the Old Mill Tower?", "height of the old mill tower"),
                   ("What is the chemical symbol of novium?", "chemical symbol of novium")]
# The CPU model has a 128-token context. The tokenizer is trained later (on these very files), so
# lengths are estimated by its split regex: about one token per chunk, plus the special tokens.
MAX_APPROX_TOKENS = 96
INVENTED_KB = "kb_invented.json"
_CHUNKS = regex.compile(GPT4_PATTERN)


def approx_tokens(messages: list[dict]) -> int:
    n = 0
    for m in messages:
        for text in (m.get("content"), m.get("reasoning_content")):
            n += len(_CHUNKS.findall(text)) + 1 if text else 0
        for call in m.get("tool_calls") or []:
            n += sum(len(_CHUNKS.findall(str(v))) for v in json.loads(call["function"]["arguments"]).values()) + 4
        n += 1
    return n


def plain_text(messages: list[dict]) -> str:
    """The conversation as plain text (no special tokens), for a pretraining corpus: train.prepare
    reads a JSONL file's "text" field, so `--data shakespeare 00c_agent_sft/data/train.jsonl` mixes
    the traces into pretraining, and the base model learns to copy digits and names early."""
    lines = []
    for m in messages:
        if m["role"] == "user":
            lines.append(f"User: {m['content']}")
        elif m["role"] == "tool":
            lines[-1] += f" -> {m['content']}"
        elif m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            arg = next(iter(json.loads(fn["arguments"]).values()))
            lines.append(f"Assistant: {m.get('reasoning_content') or ''} {fn['name']}({arg})")
        else:
            lines.append(f"Assistant: {m['content']}")
    return "\n".join(lines)


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


def build(seed: int = 0, n_train: int = 20000, n_val: int = 600, n_test: int = 300,
          exclude: frozenset[tuple] = frozenset()) -> dict:
    """{"train", "val", "test": records, "kb_invented": the invented facts the lookup_invented traces read}.
    `exclude`: conversations (tuples of user turns) that train and val must not contain. The test split is
    drawn after train from the same random stream, so another n_train gives another test split; a larger
    train set excludes the committed test split's conversations and is scored on that file."""
    g = Generator(seed)
    makers = {"arithmetic": g.arith, "lookup": g.fact, "lookup_invented": g.invented_fact, "kb_miss": g.miss, "multi_step": g.multi,
              "small_talk": g.talk, "multi_turn": g.multi_turn, "tool_error": g.error}
    test_only_names = [x for pool in g.miss_pool.values() for i, x in enumerate(pool) if i % 4 == 3]

    def tags(item: dict) -> list[str]:
        text = " ".join(user_texts(item["msgs"]))
        out = []
        if any(t in g.tpl.heldout_templates for t in item["templates"]):
            out.append("template")
        if any(e in g.heldout_entities for e in item["entities"]) or \
                any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text) for n in test_only_names):
            out.append("entity")
        if SEVEN.search(text):
            out.append("number")
        return out

    def allowed_in_training(item: dict) -> bool:
        return not any(SEVEN.search(q) or g.asked_with_heldout(q) or any(f in q.lower() for f in FORBIDDEN)
                       for q in user_texts(item["msgs"])) and not tags(item)

    def record(item: dict, category: str, split: str) -> dict:
        rec = {"messages": item["msgs"], "category": category, "split": split,
               "templates": item["templates"], "entities": item["entities"]}
        if item.get("kb"):
            rec["kb"] = item["kb"]  # observations come from kb_invented.json, not the real KB
        if split == "train":
            rec["text"] = plain_text(item["msgs"])
        else:
            rec["expected"] = item["expected"]
        if split == "test":
            rec["heldout"] = tags(item)
        return rec

    def draw(n: int, split: str, seen: set) -> list[dict]:
        out = []
        while len(out) < n:
            cat = g.weighted(TRAIN_MIX)
            item = makers[cat]()
            if item is None or approx_tokens(item["msgs"]) > MAX_APPROX_TOKENS or not allowed_in_training(item):
                continue
            key = tuple(user_texts(item["msgs"]))
            if key in seen:
                continue
            out.append(record(item, cat, split))
        return out

    train = draw(n_train, "train", set(exclude))
    seen = {tuple(user_texts(r["messages"])) for r in train} | exclude
    val = draw(n_val, "val", seen)
    seen |= {tuple(user_texts(r["messages"])) for r in val}

    def plan(cat: str, i: int) -> tuple:
        """(builder, kwargs) for the i-th test item of a category: alternate what is held out."""
        alt = i % 2 == 0
        return {
            "arithmetic": (g.arith, dict(test=True, ht=alt)),
            "arithmetic_oor": (g.arith, dict(test=True, ht=i % 3 == 0, hn=True)),
            "lookup": (g.fact, dict(test=True, ht=not alt, he=alt)),
            "kb_miss": (g.miss, dict(test=True, ht=not alt, he=alt)),
            "multi_step": (g.multi, dict(test=True, ht=i % 3 == 0, he=i % 3 == 1)),
            "small_talk": (g.talk, dict(test=True, ht=True)),
            "multi_turn": (g.multi_turn, dict(test=True)),
            "tool_error": (g.error, dict(test=True, ht=alt, hn=not alt)),
        }[cat]

    test = []
    for cat in TEST_CATEGORIES:
        got, tries = 0, 0
        while got < n_test and tries < 200 * n_test:
            fn, kw = plan(cat, got)
            tries += 1
            item = fn(**kw)
            if item is None or approx_tokens(item["msgs"]) > MAX_APPROX_TOKENS or tuple(user_texts(item["msgs"])) in seen:
                continue
            seen.add(tuple(user_texts(item["msgs"])))
            test.append(record(item, cat, "test"))
            g.test_uses.update(item["templates"])
            got += 1
    return {"train": train, "val": val, "test": test, "kb_invented": g.invented}


def write(splits: dict[str, list[dict]], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    stats = {}
    for name, recs in splits.items():
        if name == "kb_invented":  # the training-only KB the lookup_invented observations came from
            (out / INVENTED_KB).write_text(json.dumps(recs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            continue
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in recs)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
        stats[name] = {"records": len(recs), "bytes": len(text.encode()), **Counter(r["category"] for r in recs)}
    return stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent_sft.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    ap.add_argument("--out", default=str(HERE / "data"), help="output directory (default: 00c_agent_sft/data)")
    ap.add_argument("--n-train", type=int, default=20000, help="train conversations")
    ap.add_argument("--n-val", type=int, default=600, help="val conversations (same distribution as train)")
    ap.add_argument("--n-test", type=int, default=300, help="test conversations per category")
    ap.add_argument("--exclude", default=None, metavar="JSONL",
                    help="a test file whose conversations train and val must not contain")
    args = ap.parse_args(argv)
    exclude = frozenset()
    if args.exclude:
        exclude = frozenset(tuple(user_texts(json.loads(line)["messages"]))
                            for line in Path(args.exclude).read_text(encoding="utf-8").splitlines() if line.strip())
    stats = write(build(args.seed, args.n_train, args.n_val, args.n_test, exclude), Path(args.out))
    for name, s in stats.items():
        print(f"{name:>5}: {json.dumps(s)}")


if __name__ == "__main__":
    main()
