"""agent_sft.eval end to end on a tiny checkpoint: a real 03_model server on a free port, the real
agent loop and tools, a handful of test items, and both report files with every category key.
The tiny model has memorised "What is 1234 plus 5678?" (tests/tiny_checkpoint.py), so that row of
the ten-query table must come out right, through a real calc call."""
import json

import pytest

from agent_sft.eval import TEST_CATEGORIES, evaluate, norm_number, score_turn, settled
from agent_sft.traces import HERE
from tiny_checkpoint import make_tiny_run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    ckpt = make_tiny_run(tmp, steps=150)
    # one test item per category (the first of each), to keep the run short
    seen, lines = set(), []
    for line in (HERE / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        cat = json.loads(line)["category"]
        if cat not in seen:
            seen.add(cat)
            lines.append(line)
    (tmp / "test.jsonl").write_text("\n".join(lines) + "\n")
    r = evaluate(str(ckpt), test_file=str(tmp / "test.jsonl"), out_dir=str(tmp / "reports"), workers=4, threads=1)
    return r, tmp / "reports"


def test_report_files_have_every_category(report):
    r, out = report
    on_disk = json.loads((out / "agent_eval.json").read_text())
    assert on_disk["accuracy"] == r["accuracy"]
    assert set(r["accuracy"]) == set(TEST_CATEGORIES) | {"kb_added"}
    assert all(v["n"] >= 1 and 0 <= v["accuracy"] <= 1 for v in r["accuracy"].values())
    assert r["accuracy"]["kb_added"]["n"] >= 5
    assert [q["question"] for q in r["ten_queries"]][:3] == [
        "What is the capital of France?", "What is 23 plus 47?", "What is 1234 plus 5678?"]
    assert len(r["ten_queries"]) == 10
    assert {"precision", "turns_with_tool"} <= set(r["tool_precision"]) and "rate" in r["small_talk_no_tool"]
    assert r["decoding"] == "greedy on cpu, protocol grammar, copy rules"  # the defaults: what the report says it measured
    md = (out / "agent_eval.md").read_text()
    for cat in r["accuracy"]:
        assert f"| {cat} |" in md
    assert "## The ten queries" in md and "## Failure examples" in md


def test_memorised_query_goes_through_the_real_calc_tool(report):
    r, _ = report
    row = r["ten_queries"][2]
    assert row["actions"] == ["calc(1234 + 5678)"] and "6912" in row["answer"] and row["ok"], row
    # it is not a language model: most other rows fail, and failures are reported with their reason
    assert sum(q["ok"] for q in r["ten_queries"]) < 10 and r["failures"]


def test_scoring_rules():
    num = {"kind": "number", "answer": "6912", "tools": ["calc"]}
    assert score_turn({"tools": ["calc"], "answer": "1234 + 5678 = 6,912."}, num)[0]
    assert not score_turn({"tools": ["calc"], "answer": "1234 + 5678 = 6913."}, num)[0]
    assert not score_turn({"tools": [], "answer": "6912."}, num)[0]  # right number, but no tool
    assert norm_number("12.50") == "12.5" and norm_number("3.0") == "3" and norm_number("1,000") == "1000"
    fact = {"kind": "fact", "answer": "the Nile", "tools": ["lookup"]}
    assert score_turn({"tools": ["lookup"], "answer": "The longest river in Africa is the Nile."}, fact)[0]
    assert not score_turn({"tools": ["lookup"], "answer": "The longest river in Africa is the Niles."}, fact)[0]
    miss = {"kind": "miss", "answer": None, "tools": ["lookup"]}
    assert score_turn({"tools": ["lookup"], "answer": "I don't know the capital of Mongolia."}, miss)[0]
    assert not score_turn({"tools": ["lookup"], "answer": "The capital of Mongolia is Paris."}, miss)[0]
    chat = {"kind": "chat", "answer": None, "tools": []}
    assert score_turn({"tools": [], "answer": "I'm doing well!"}, chat)[0]
    assert not score_turn({"tools": ["lookup"], "answer": "I'm doing well!"}, chat)[0]
    err = {"kind": "error", "answer": "divide by zero", "tools": ["calc"]}
    assert score_turn({"tools": ["calc"], "answer": "You can't divide by zero."}, err)[0]
    assert not score_turn({"tools": ["calc"], "answer": "8 / 0 = 0.", "error": None}, err)[0]


def test_a_restarted_step_leaves_no_text_in_the_scored_turn():
    ev = lambda t, d="": {"type": t, "delta": d}
    events = [ev("thought", "I should look this up."), ev("action", "lookup(capital of France)"),
              ev("observation", "Paris"), ev("thought", "x"), ev("answer", "Par"), {"type": "restart"},
              ev("answer", "Paris."), {"type": "done"}]
    kept = settled(iter(events))
    assert [e["type"] for e in kept] == ["thought", "action", "observation", "answer", "done"]
    assert "".join(e["delta"] for e in kept if e["type"] == "answer") == "Paris."
