"""Tests for sft.data: the bundled chat set and the loader/splitter."""

import json
from collections import Counter, defaultdict

import pytest

from sft.data import DEFAULT_PATH, DataError, load_conversations, main, split

CATEGORIES = {"facts", "arithmetic", "smalltalk", "identity", "refusal", "multiturn"}


@pytest.fixture(scope="module")
def convs():
    return load_conversations()


def test_bundled_file_loads_and_is_big_enough(convs):
    assert len(convs) >= 400
    assert load_conversations(DEFAULT_PATH) == convs


def test_every_category_present_and_roughly_even(convs):
    counts = Counter(c["category"] for c in convs)
    assert set(counts) == CATEGORIES
    assert min(counts.values()) >= 0.5 * max(counts.values()), counts


def test_roles_alternate_and_contents_are_plain_short_strings(convs):
    for c in convs:
        roles = [m["role"] for m in c["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2), roles
        for m in c["messages"]:
            assert set(m) == {"role", "content"}, m  # plain content, no tool calls in this set
            assert isinstance(m["content"], str) and m["content"].strip() == m["content"] != ""
            if m["role"] == "assistant":
                assert len(m["content"]) < 200, m["content"]
        n_user = roles.count("user")
        assert (n_user >= 2) == (c["category"] == "multiturn"), c


def test_facts_have_several_phrasings(convs):
    phrasings = defaultdict(set)
    for c in convs:
        if c["category"] == "facts":
            phrasings[c["messages"][1]["content"]].add(c["messages"][0]["content"])
    assert len(phrasings) >= 25
    for answer, questions in phrasings.items():
        assert len(questions) >= 3, (answer, questions)


def test_identity_is_consistent(convs):
    said = [m["content"] for c in convs for m in c["messages"] if m["role"] == "assistant"]
    names = [s for s in said if s.startswith("I am ") and "language model" in s]
    assert names and all("Tiny" in s for s in names)
    assert not any(other in s for s in said for other in ("ChatGPT", "OpenAI", "I am GPT"))


def test_no_duplicate_conversations(convs):
    keys = [json.dumps(c["messages"]) for c in convs]
    assert len(keys) == len(set(keys))


def test_split_deterministic_disjoint_and_complete(convs):
    train, val = split(convs, val_fraction=0.1, seed=0)
    train2, val2 = split(list(convs), val_fraction=0.1, seed=0)
    assert (train, val) == (train2, val2)
    ids = {id(c) for c in train}
    assert not ids & {id(c) for c in val}
    assert len(train) + len(val) == len(convs)
    assert 0.03 * len(convs) < len(val) < 0.2 * len(convs)
    # a different seed gives a different split
    assert split(convs, 0.1, seed=1)[1] != val


def test_split_stable_when_lines_are_appended(convs):
    _, val = split(convs[:200])
    extra = [{"messages": [{"role": "user", "content": f"new question {i}?"},
                           {"role": "assistant", "content": "A new answer."}], "category": "facts"}
             for i in range(100)]
    _, val_more = split(convs[:200] + extra)
    assert val_more[: len(val)] == val
    # the side depends on the first user message only (same message -> same side)
    same = [{"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": x}]}
            for x in ("Hi!", "Hello there.", "Hey!")]
    t, v = split(same, 0.5)
    assert len(t) in (0, 3) and len(v) in (0, 3)


def test_split_rejects_bad_fraction(convs):
    with pytest.raises(ValueError, match="val_fraction"):
        split(convs, val_fraction=1.0)


GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
BAD_LINES = {
    "invalid JSON": '{"messages": [',
    "missing 'role'": json.dumps({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "x"}]}),
    "must be a string": json.dumps({"messages": [{"role": "user", "content": 3},
                                                 {"role": "assistant", "content": "x"}]}),
    "expected role 'user', got 'assistant'": json.dumps({"messages": [{"role": "assistant", "content": "x"}]}),
    "expected role 'assistant', got 'user'": json.dumps({"messages": [{"role": "user", "content": "a"},
                                                                      {"role": "user", "content": "b"}]}),
    "must end with an assistant answer": json.dumps({"messages": [{"role": "user", "content": "a"}]}),
    "non-empty list": json.dumps({"messages": []}),
    "'weight' must be 0": json.dumps({"messages": [{"role": "user", "content": "a"},
                                                   {"role": "assistant", "content": "x", "weight": 0.5}]}),
}


@pytest.mark.parametrize("expected", list(BAD_LINES))
def test_bad_line_error_names_file_and_line(tmp_path, expected):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + BAD_LINES[expected] + "\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(DataError) as err:
        load_conversations(path)
    assert f"{path}:3:" in str(err.value)
    assert expected in str(err.value)


def test_tool_call_conversations_validate(tmp_path):
    msgs = [{"role": "user", "content": "What is 1234 plus 5678?"},
            {"role": "assistant", "content": None, "reasoning_content": "I need to add.",
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "calc", "arguments": '{"expression": "1234 + 5678"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "6912"},
            {"role": "assistant", "content": "6912."}]
    path = tmp_path / "agent.jsonl"
    path.write_text(json.dumps({"messages": msgs}) + "\n")
    assert load_conversations(path)[0]["messages"] == msgs
    msgs[2]["tool_call_id"] = "other"
    path.write_text(json.dumps({"messages": msgs}) + "\n")
    with pytest.raises(DataError, match=r"agent.jsonl:1: .*tool_call_id"):
        load_conversations(path)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_conversations(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no conversations"):
        load_conversations(tmp_path / "empty.jsonl")


def test_cli_stats(capsys, tmp_path):
    main(["--stats"])
    out = capsys.readouterr().out
    for cat in CATEGORIES:
        assert cat in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl:1: invalid JSON"):
        main(["--path", str(bad)])
