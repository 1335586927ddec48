"""Agent evaluation: the REAL agent loop (agent.loop.Agent -> HTTP -> 03_model) with greedy decoding.

    python -m agent_sft.eval --checkpoint runs/default/agent            # starts 03_model on a free port
    python -m agent_sft.eval --checkpoint runs/default/agent --limit 20 # 20 test items per category
    python -m agent_sft.eval --checkpoint DIR --base-url http://127.0.0.1:9000/v1   # a running server

Runs the test split of the traces (categories arithmetic, arithmetic_oor, lookup, kb_miss, multi_step,
small_talk, multi_turn, tool_error), the seed's ten-query table, and `kb_added`: facts the model
never saw (e.g. "capital of mongolia") written into a COPY of the KB that the lookup tool reads
through KB_PATH. Writes reports/agent_eval.json and reports/agent_eval.md.

Scoring, per user turn: the tools used must be exactly the expected ones (none for small talk);
a number must appear among the answer's numbers (commas and trailing zeros normalised); a fact
must appear in the answer (case, accents, punctuation and articles normalised like lookup does);
a KB miss must say it doesn't know; a tool error must be explained. A multi-turn conversation
counts only if every turn does; later turns build on the model's own earlier messages.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from agent.loop import Agent
from agent.tools import calc, lookup, normalize
from model.launch import free_port, wait_healthy

from .generate import ADDED_FACTS, ADDED_QUESTIONS, TEST_CATEGORIES
from .traces import HERE, KB_FILE

ROOT = HERE.parent
DONT_KNOW = re.compile(r"\b(don't|do not|doesn't|cannot|can't) (know|find)|\bnot sure\b|\bno idea\b", re.IGNORECASE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
ERROR_WORDS = {"divide by zero": re.compile(r"zero", re.I), "too large": re.compile(r"too (large|big)", re.I)}


def ten_queries(kb: Path) -> list[tuple[str, dict]]:
    """The seed's table; expected values come from the real tools, not from this file."""
    fact = lambda key: {"kind": "fact", "answer": lookup(key, kb_path=kb), "tools": ["lookup"]}
    num = lambda expr: {"kind": "number", "answer": calc(expr), "tools": ["calc"]}
    return [("What is the capital of France?", fact("capital of france")), ("What is 23 plus 47?", num("23 + 47")),
            ("What is 1234 plus 5678?", num("1234 + 5678")), ("Who wrote Hamlet?", fact("author of hamlet")),
            ("What is 8 times 7?", num("8 * 7")), ("What is the chemical symbol of gold?", fact("chemical symbol of gold")),
            ("What's the speed of light?", fact("speed of light")),
            ("What is the longest river in Africa?", fact("longest river of africa")),
            ("What is the capital of Mongolia?", {"kind": "miss", "answer": None, "tools": ["lookup"]}),
            ("How are you today?", {"kind": "chat", "answer": None, "tools": []})]


def norm_number(s: str) -> str:
    s = s.replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0", "-") else s


def score_turn(turn: dict, exp: dict) -> tuple[bool, str]:
    """-> (correct, why not)."""
    used, answer = turn["tools"], turn["answer"]
    if turn.get("error"):
        return False, f"agent error: {turn['error']}"
    if sorted(set(used)) != sorted(set(exp["tools"])):
        return False, f"tools {used} instead of {exp['tools']}"
    kind = exp["kind"]
    if kind == "number":
        ok = norm_number(exp["answer"]) in {norm_number(n) for n in NUMBER.findall(answer)}
    elif kind == "fact":
        ok = f" {normalize(exp['answer'])} " in f" {normalize(answer)} "
    elif kind == "miss":
        ok = bool(DONT_KNOW.search(answer)) and not (exp.get("answer") and normalize(exp["answer"]) in normalize(answer))
    elif kind == "error":
        ok = bool(ERROR_WORDS[exp["answer"]].search(answer))
    else:  # chat: any answer, no tool
        ok = bool(answer.strip())
    return ok, "" if ok else f"answer lacks {exp['answer']!r}" if exp.get("answer") else "wrong answer"


def settled(events) -> list[dict]:
    """The turn's events without the steps that a `restart` voided (their thoughts and answers)."""
    out: list[dict] = []
    for e in events:
        if e["type"] != "restart":
            out.append(e)
            continue
        while out and out[-1]["type"] in ("thought", "answer"):
            out.pop()
    return out


def run_item(agent: Agent, questions: list[str], expected: list[dict]) -> dict:
    """Talk to the agent turn by turn; the history is the agent's own messages."""
    history: list[dict] = []
    turns = []
    for q, exp in zip(questions, expected):
        history = history + [{"role": "user", "content": q}]
        events = settled(agent.run(history))
        turn = {"question": q, "tools": [e["tool"] for e in events if e["type"] == "action"],
                "actions": [e["delta"] for e in events if e["type"] == "action"],
                "observations": [e["delta"] for e in events if e["type"] == "observation"],
                "thought": "".join(e["delta"] for e in events if e["type"] == "thought"),
                "answer": "".join(e["delta"] for e in events if e["type"] == "answer")}
        last = events[-1] if events else {"type": "error", "message": "no events"}
        if last["type"] == "error":
            turn["error"] = last["message"]
        turn["ok"], turn["why"] = score_turn(turn, exp)
        turns.append(turn)
        if last["type"] != "done":
            break
        history = last["messages"]
    ok = len(turns) == len(expected) and all(t["ok"] for t in turns)
    return {"ok": ok, "turns": turns}


@contextmanager
def model_server(checkpoint: str, threads: int | None, grammar: bool = True, device: str = "cpu",
                 max_batch: int = 8, copy_rules: bool = True):
    """03_model on a free loopback port for the duration; yields its /v1 base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "model.serve", "--checkpoint", checkpoint, "--port", str(port),
           "--log-level", "warning", "--device", device, "--max-batch", str(max_batch)]
    cmd += ["--threads", str(threads)] if threads else []
    cmd += [] if grammar else ["--no-grammar"]
    cmd += [] if copy_rules else ["--no-copy-rules"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", proc, "model server", timeout=180)
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_items(path: Path, limit: int | None) -> list[dict]:
    items, per_cat = [], Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if limit is None or per_cat[rec["category"]] < limit:
            per_cat[rec["category"]] += 1
            items.append({"category": rec["category"], "heldout": rec.get("heldout", []), "expected": rec["expected"],
                          "questions": [m["content"] for m in rec["messages"] if m["role"] == "user"]})
    return items


def run_all(agent: Agent, jobs: list[dict], workers: int) -> list[dict]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: run_item(agent, j["questions"], j["expected"]), jobs))
    return [{**j, **r} for j, r in zip(jobs, results)]


def summarise(results: list[dict]) -> dict:
    acc = defaultdict(lambda: {"n": 0, "correct": 0})
    held = defaultdict(lambda: {"n": 0, "correct": 0})
    for r in results:
        for key, table in ((r["category"], acc), *(((h, held) for h in r.get("heldout") or ["none"])
                                                   if r["category"] in TEST_CATEGORIES else ())):
            table[key]["n"] += 1
            table[key]["correct"] += r["ok"]
    for table in (acc, held):
        for v in table.values():
            v["accuracy"] = round(v["correct"] / v["n"], 4)
    turns = [(t, e) for r in results for t, e in zip(r["turns"], r["expected"])]
    with_tool = [(t, e) for t, e in turns if t["tools"]]
    right = sum(set(t["tools"]) <= set(e["tools"]) and bool(e["tools"]) for t, e in with_tool)
    chat = [t for t, e in turns if e["kind"] == "chat"]
    return {"accuracy": dict(acc), "by_heldout": dict(held),
            "tool_precision": {"turns_with_tool": len(with_tool), "right_tool": right,
                               "precision": round(right / max(len(with_tool), 1), 4)},
            "small_talk_no_tool": {"turns": len(chat), "no_tool": sum(not t["tools"] for t in chat),
                                   "rate": round(sum(not t["tools"] for t in chat) / max(len(chat), 1), 4)}}


def evaluate(checkpoint: str, base_url: str | None = None, kb: str | None = None, limit: int | None = None,
             test_file: str | None = None, out_dir: str | None = None, workers: int = 4,
             threads: int | None = None, grammar: bool = True, device: str = "cpu", copy_rules: bool = True) -> dict:
    t0 = time.time()
    kb_path = Path(kb or os.environ.get("KB_PATH") or KB_FILE).resolve()
    test_path = Path(test_file or HERE / "data" / "test.jsonl")
    items = load_items(test_path, limit)
    table = [{"category": "ten_query", "questions": [q], "expected": [e]} for q, e in ten_queries(kb_path)]
    tmp = Path(tempfile.mkdtemp(prefix="agent_eval_kb"))
    added_kb = tmp / "kb.json"
    added_kb.write_text(json.dumps({**json.loads(kb_path.read_text(encoding="utf-8")), **ADDED_FACTS},
                                   ensure_ascii=False, indent=1), encoding="utf-8")
    added = [{"category": "kb_added", "questions": [q],
              "expected": [{"kind": "fact", "answer": ADDED_FACTS[key], "tools": ["lookup"]}]}
             for q, key in ADDED_QUESTIONS]
    old_kb = os.environ.get("KB_PATH")
    server = (model_server(checkpoint, threads, grammar, device, max(8, workers), copy_rules)
              if base_url is None else None)
    try:
        url = server.__enter__() if server else base_url
        agent = Agent(url, temperature=0.0, max_tokens=128, max_steps=4)
        os.environ["KB_PATH"] = str(kb_path)          # the agent's tools run in this process
        results = run_all(agent, items + table, workers)
        os.environ["KB_PATH"] = str(added_kb)         # the same model, a KB with facts it never saw
        results += run_all(agent, added, workers)
    finally:
        if server:
            server.__exit__(None, None, None)
        os.environ.pop("KB_PATH") if old_kb is None else os.environ.__setitem__("KB_PATH", old_kb)
        shutil.rmtree(tmp, ignore_errors=True)
    meta_path = Path(checkpoint) / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    scored = [r for r in results if r["category"] != "ten_query"]
    report = {"checkpoint": str(checkpoint), "stage": meta.get("stage"), "step": meta.get("step"),
              "preset": meta.get("preset"), "losses": meta.get("losses"), "test_file": str(test_path),
              "limit_per_category": limit, "items": len(scored), "kb": str(kb_path),
              "decoding": (f"greedy on {device}" + (", protocol grammar" if grammar else ", unconstrained")
                           + (", copy rules" if grammar and copy_rules else ""))
              if base_url is None
              else "greedy, as the server at --base-url decodes", **summarise(scored),
              "ten_queries": [{"question": r["questions"][0], "answer": r["turns"][0]["answer"] if r["turns"] else "",
                               "actions": r["turns"][0]["actions"] if r["turns"] else [], "ok": r["ok"]}
                              for r in results if r["category"] == "ten_query"],
              "failures": {}, "time_s": round(time.time() - t0, 1)}
    report["goal_90_every_test_category"] = all(v["accuracy"] >= 0.9 for k, v in report["accuracy"].items())
    for r in scored:  # every failure, for diagnosis; the Markdown shows the first three per category
        if not r["ok"]:
            report["failures"].setdefault(r["category"], []).append(
                {"heldout": r.get("heldout", []), "expected": r["expected"], "turns": r["turns"]})
    out = Path(out_dir or ROOT / "reports")
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "agent_eval.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    lines = [f"# Agent evaluation: `{r['checkpoint']}`", "",
             f"Stage {r['stage']}, step {r['step']}, preset {r['preset']}; {r['items']} conversations "
             f"(limit {r['limit_per_category']} per category) in {r['time_s']} s; greedy decoding through the "
             "real agent loop and 03_model.", "", "| category | n | correct | accuracy |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['correct']} | {v['accuracy']:.1%} |" for k, v in r["accuracy"].items()]
    lines += ["", "Test items by what they hold out (an item can count in several rows):", "",
              "| held out | n | accuracy |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['accuracy']:.1%} |" for k, v in sorted(r["by_heldout"].items())]
    tp, st = r["tool_precision"], r["small_talk_no_tool"]
    lines += ["", f"Tool-call precision: {tp['precision']:.1%} ({tp['right_tool']}/{tp['turns_with_tool']} turns "
              f"with a tool used the right one). Small talk without a tool: {st['rate']:.1%} "
              f"({st['no_tool']}/{st['turns']}).", "", "## The ten queries", "", "| ok | question | actions | answer |",
              "|---|---|---|---|"]
    for q in r["ten_queries"]:
        lines.append(f"| {'yes' if q['ok'] else 'NO'} | {q['question']} | {'; '.join(q['actions']) or '-'} | "
                     f"{q['answer'].replace('|', '/')} |")
    lines += ["", "## Failure examples", ""]
    for cat, fails in r["failures"].items():
        for f in fails[:3]:
            t = f["turns"][-1] if f["turns"] else {}
            lines.append(f"- **{cat}**: {t.get('question', '')!r} -> actions {t.get('actions')}, answer "
                         f"{t.get('answer', '')!r} ({t.get('why', '')})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent_sft.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint dir to serve (runs/<run>/agent)")
    ap.add_argument("--base-url", default=None, help="use a running 03_model at this /v1 URL instead of starting one")
    ap.add_argument("--kb", default=None, help="knowledge base JSON (default: KB_PATH or the shipped kb.json)")
    ap.add_argument("--limit", type=int, default=None, help="at most N test conversations per category")
    ap.add_argument("--test-file", default=None, help="test JSONL (default: 00c_agent_sft/data/test.jsonl)")
    ap.add_argument("--out-dir", default=None, help="where agent_eval.json/.md go (default: reports/)")
    ap.add_argument("--workers", type=int, default=4, help="conversations in flight at once")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the started server")
    ap.add_argument("--device", default="cpu",
                    help="device of the started server: cpu (float32; the default) | cuda (bfloat16, CUDA graphs)")
    ap.add_argument("--no-grammar", action="store_true",
                    help="the started server decodes unconstrained (model.serve --no-grammar)")
    ap.add_argument("--no-copy-rules", action="store_true",
                    help="the started server lets actions and answers write what they did not copy "
                         "(model.serve --no-copy-rules)")
    args = ap.parse_args(argv)
    if args.checkpoint and not Path(args.checkpoint).is_dir() and args.base_url is None:
        raise SystemExit(f"error: checkpoint {args.checkpoint} does not exist")
    r = evaluate(args.checkpoint, args.base_url, args.kb, args.limit, args.test_file, args.out_dir,
                 args.workers, args.threads, not args.no_grammar, args.device, not args.no_copy_rules)
    print(markdown(r))


if __name__ == "__main__":
    main()
