"""03_model's copy rules (copying.py): what a rule allows, that the training traces obey them, and
that the engine's chat turns follow them (greedy and sampled; eager on the CPU, CUDA graphs on a GPU).
CPU, tiny model, except the gpu-marked test."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from agent.loop import tool_schemas
from agent.tools import relations
from model.copying import NUMBER, WORD, CopyRule, chat_rule, tools_text
from model.reporting import answer_shapes, checkpoint_shapes, last_result, shaped_answers
from model.engine import Done, Engine, Request
from model.responses import CHAT_STOP_TOKENS
from model.sampling import SamplingParams
from tiny_checkpoint import load_tiny_run
from transformer.chat import render_prompt

DATA = Path(__file__).resolve().parents[1] / "00c_agent_sft" / "data"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny_run(tmp_path_factory.mktemp("tiny"))


def test_numbers():
    rule = CopyRule("What is 59700000 + 74328900? Earlier: 859.23 and -42.", tools=None)
    assert rule.numbers == {"59700000", "74328900", "859.23", "42"}
    for action in (True, False):
        assert rule.allows("calc(59700000 + 7432", action)            # open: a prefix of 74328900
        assert rule.allows("calc(59700000 + 74328900)", action, final=True)
        assert not rule.allows("calc(597000000", action)              # one 0 too many
        assert not rule.allows("calc(5970000 + 1)", action)           # closed, not copied
        assert rule.allows("The answer is 859.", action)              # 859. may still become 859.23
        assert rule.allows("The answer is -42.", action, final=True)  # a sentence's period
        assert not rule.allows("The answer is 42.", action, final=True)  # the sign goes with the copy
        assert not rule.allows("calc(-59700000 + 74328900)", action, final=True)
        assert not rule.allows("The answer is 859.2", action, final=True)
        assert rule.allows("no numbers at all", action, final=True)
    # one digit: an action may write it ("cubed" -> ** 3), an answer may not
    assert rule.allows("calc(-42 ** 3)", True, final=True)
    assert not rule.allows("It is 3.", False, final=True)
    assert not rule.allows("It is 3", False)  # open, and no copied number starts with 3


def test_signs_and_brackets_of_an_action():
    """A minus right before a number is part of its copy ("-161.47"), a minus between two numbers is
    not ("5 - 3", "5-3"); an action's brackets balance."""
    rule = CopyRule("-161.47 plus 33, all times 833 = ? And 10659310 / 5-3", "calc(expression): + - * / ( )",
                    calls=["calc"])
    assert rule.allows("calc((-161.47 + 33) * 833)", True, final=True)
    assert rule.allows("calc(10659310 / 5 - 3)", True, final=True) and rule.allows("calc(833 * -1)", True, final=True)
    for text in ("calc((161.47 + 33) * 833)", "calc(-10659310 / 5)", "calc(-33 * 833)"):
        assert not rule.allows(text, True, final=True), text
    assert rule.allows("calc((833 + 33)", True)                        # still open
    assert rule.allows("calc(833 + 33)", True)                         # the action's own bracket
    assert not rule.allows("calc(833 + 33) * 5)", True)                # ... after which nothing
    assert rule.allows("calc((833 + 33) * 5)", True, final=True)
    assert not rule.allows("calc((833 + 33)", True, final=True)        # unclosed
    assert not rule.allows("calc(833 + 33))", True, final=True)


def test_words_and_characters_of_an_action():
    tools = "lookup(query): Look up a fact. Relations: capital, composer."
    rule = CopyRule("Who is the composer of Madama Butterfly?", tools)
    assert rule.allows("lookup(composer of Madama Butterfly)", True, final=True)
    assert rule.allows("lookup(composer of madama butter", True)      # as written or lower case; open prefix
    assert not rule.allows("lookup(Composer", True)                   # a tool word: lower case only
    assert not rule.allows("lookup(composer of MaDama", True)         # no one wrote it so
    assert not rule.allows("lookup(COMPOSER", True)
    assert not rule.allows("lookup(composer of M was", True)          # "was": nobody wrote it
    assert not rule.allows("lookup(composer of Madama Butter)", True, final=True)  # closed, not a word
    assert not rule.allows("lookup(composer of Madama\x05", True)     # a character nobody wrote
    assert not rule.allows("lookup(composer of Madama & Butterfly", True)
    assert rule.allows("lookup(composer of M was", False)             # answers' words are free
    free = CopyRule("Who is the composer of Madama Butterfly?", tools=None)
    assert free.allows("lookup(composer of M was & co)", True, final=True)  # no tools given: unchecked


def test_the_form_of_an_action():
    """name(argument), name one of the request's tools: what parse_action reads as a call."""
    rule = CopyRule("the president of Algeria", "lookup calc ( )", calls=["lookup", "calc"])
    assert rule.allows("look", True) and rule.allows("lookup(president of Algeria", True)
    assert rule.allows("lookup(president of Algeria)", True, final=True)
    assert not rule.allows("lookup president", True)           # no bracket: the server would show it as text
    assert not rule.allows("lookup", True, final=True)
    assert not rule.allows("lookup(president of Algeria", True, final=True)  # unclosed
    assert not rule.allows("calculate(", True)
    assert CopyRule("the president", "lookup ( )", calls=None).allows("lookup president", True)  # any form
    accented = CopyRule("the président of Algeria", "lookup ( )", calls=["lookup"])
    assert accented.allows_bytes(b"lookup(pr\xc3", True)  # a character cut inside the argument


def test_names_of_an_answer():
    """A capitalized word of an answer that starts like a word of this turn's results is one of them."""
    rule = CopyRule("What is Madagascar's capital? Antananarivo", tools=None, results="Antananarivo\nBogotá")
    assert rule.allows("Antananarivo.", False, final=True)
    assert rule.allows("Antanan", False)                          # open: on the way
    assert not rule.allows("Antanarivo", False)                   # a near copy
    assert not rule.allows("Ant.", False, final=True)
    assert rule.allows("The answer is Antananarivo.", False, final=True)  # "The": nothing starts so
    assert rule.allows("antanarivo", False, final=True)           # not capitalized: not a name
    assert rule.allows("Antanarivo", True, final=True)            # actions have their own rules
    assert rule.allows_bytes("Bogot".encode() + "á".encode()[:1], False)  # a name cut mid-character
    assert not rule.allows_bytes(b"Bogus\xc3", False)
    assert CopyRule("Antananarivo", None).allows("Antanarivo.", False, final=True)  # no results, no names


def test_an_argument_is_a_piece_of_the_tools_then_one_of_the_conversation():
    """lookup(composer of In the Hall of the Mountain King): "composer of " is the tools' text, the
    rest the user's; words of the question in another order, or with some left out, are not."""
    tools = "calc(expression): + - * /. lookup(query): Look up a fact. It knows: composer of ..., number of moons of ..., capital of ..."
    rule = CopyRule("Who composed In the Hall of the Mountain King? How many moons has Mars got?", tools,
                    calls=["lookup", "calc"])
    ok = ["lookup(composer of In the Hall of the Mountain King)", "lookup(number of moons of Mars)",
          "lookup(In the Hall of the Mountain King)", "lookup(capital of Mars)"]
    for text in ok:
        assert rule.allows(text, True, final=True), text
        for cut in range(1, len(text)):  # and every prefix of it, still open
            assert rule.allows(text[:cut], True), text[:cut]
    for text in ("lookup(composer of In the Mountain King)",   # words left out
                 "lookup(composer of the Mountain In)",        # in another order
                 "lookup(composer of In the Hall of the Mount)",  # a piece ends where a word does
                 "lookup(composer of In the Hall of the Mountain)", "lookup(composer of In the Hall)",
                 "lookup(composer of In)",                     # and not inside a name
                 "lookup(composer of mars moons)", "lookup(Composer of Mars)", "lookup(composer of ?)"):
        assert not rule.allows(text, True, final=True), text
    assert rule.allows("calc(2 ** 3)", True, final=True)  # no words: an expression, not checked
    # where the pieces meet: the user's piece neither repeats the tools' last word nor their words
    brief = CopyRule("Who wrote A Brief History of Time?", "lookup(query): It knows: author of ...", calls=["lookup"])
    assert brief.allows("lookup(author of A Brief History of Time)", True, final=True)
    assert not brief.allows("lookup(author of A Brief History)", True, final=True)
    assert brief.allows("lookup(author of A Brief History", True)  # on the way
    seam = CopyRule("What is the year of the fall of Rome? Is the number of moons of Pago Pago 0?",
                    "lookup(query): It knows: year of ..., number of moons of ...", calls=["lookup"])
    for text in ("lookup(year of the fall of Rome)", "lookup(number of moons of Pago Pago)"):
        assert seam.allows(text, True, final=True), text
        assert all(seam.allows(text[:cut], True) for cut in range(1, len(text))), text
    for text in ("lookup(year of the year of the fall)", "lookup(number of moons of of moons of Pago)",
                 "lookup(year of the year of)", "lookup(year of of the fall of Rome)"):
        assert not seam.allows(text, True, final=True), text
    assert not seam.allows("lookup(year of of ", True) and seam.allows("lookup(year of of", True)  # "of..." may go on


def _turn(question: str, tool: str, *results: str, answer: str) -> list[dict]:
    calls = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": f"c{i}", "type": "function", "function": {"name": tool, "arguments": "{}"}}]} for i in range(len(results))]
    tools = [{"role": "tool", "tool_call_id": f"c{i}", "content": r} for i, r in enumerate(results)]
    return [{"role": "user", "content": question}, *[m for pair in zip(calls, tools) for m in pair],
            {"role": "assistant", "content": answer}]


SHAPED = [{"messages": _turn("q", "calc", "6912", answer="The answer is 6912.")
           + _turn("q", "lookup", "12", "Paris", answer="Paris.")
           + _turn("q", "lookup", "not found: capital of x", answer="Sorry, I don't know that.")
           + _turn("q", "lookup", "not found: capital of y", answer="Sorry, I don't know that.")
           + _turn("q", "calc", "error: division by zero", answer="You can't divide by zero.")
           + _turn("q", "calc", "error: result too large", answer="Too large.")
           + [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]}]


def test_answer_shapes():
    """The answers after tool results, shaped around the last result and sorted by its tool and
    kind: a label's messages answered alike are one kind, messages answered apart are kinds of their
    own."""
    shapes = answer_shapes(SHAPED)
    assert shapes == {"calc": {"": [["The answer is ", "."]], "error: division by zero": [["You can't divide by zero."]],
                               "error: result too large": [["Too large."]]},
                      "lookup": {"": [["", "."]], "not found: ": [["Sorry, I don't know that."]]}}
    assert shaped_answers(shapes, "lookup", "Washington, D.C.") == ["Washington, D.C.."]
    assert shaped_answers(shapes, "calc", "-42") == ["The answer is -42."]
    assert shaped_answers(shapes, "lookup", "not found: capital of mongolia") == ["Sorry, I don't know that."]
    assert shaped_answers(shapes, "calc", "error: result too large") == ["Too large."]
    # an error the training never answered: the tool's answers that copy nothing
    assert shaped_answers(shapes, "lookup", "error: lookup expects '<relation> of <entity>'") == [
        "Sorry, I don't know that."]
    assert shaped_answers(shapes, "calc", "error: unsupported expression") == ["Too large.", "You can't divide by zero."]
    assert shaped_answers(shapes, "weather", "sunny") is None  # a tool it was not trained with
    chatty = [{"messages": _turn("q", "calc", str(i), answer=f"Well, {i} is {i} and {i}.")} for i in range(40)]
    assert answer_shapes(chatty) is None  # answers in free words: too many shapes to hold them to


def test_an_answer_after_results_is_one_the_shapes_make():
    shapes = answer_shapes(SHAPED) | {"": {"": [["", "."], ["The answer is ", "."]]}}
    rule = CopyRule("What is the founder of Sony? 12", None, "1946\nMasaru Ibuka and Akio Morita",
                    answers=shaped_answers(shapes, "", "Masaru Ibuka and Akio Morita"))
    for text in ("Masaru Ibuka and Akio Morita.", "The answer is Masaru Ibuka and Akio Morita."):
        assert rule.allows(text, False, final=True), text
        assert all(rule.allows(text[:cut], False) for cut in range(1, len(text))), text
        assert rule.allows_bytes(text.encode(), False, final=True)
    for text in ("Masaru Ibuka.", "The answer is 1946.", "Sorry, I don't know that.", "The answer is",
                 "Masaru Ibuka and Akio Morita", " Masaru Ibuka and Akio Morita."):
        assert not rule.allows(text, False, final=True), text
    assert not rule.allows("The answer was", False)
    assert rule.allows("lookup(Sony)", True, final=True)  # actions: their own rules
    accents = CopyRule("the currency of Vietnam?", None, "Vietnamese đồng", answers=["Vietnamese đồng."])
    copy = "Vietnamese đồng.".encode()  # tokens may cut its characters: every byte prefix is on the way
    assert all(accents.allows_bytes(copy[:cut], False) for cut in range(1, len(copy)))
    assert accents.allows_bytes(copy, False, final=True)
    assert not accents.allows_bytes("Vietnamese đng.".encode(), False, final=True)
    # without shapes: names are copied, and a copy goes on to its result's end
    rule = CopyRule("q 12", None, "Masaru Ibuka and Akio Morita")
    assert rule.allows("Masaru Ibuka and Akio Morita, 12 of them!", False, final=True)
    for text in ("Masaru Ibuka.", "Masaru Ibuka and Claud Morita.", "Masaru  Ibuka and Akio Morita.", "Masaro."):
        assert not rule.allows(text, False, final=True), text


def test_a_checkpoints_answer_shapes():
    assert checkpoint_shapes({"stage": "sft"}) is None
    good = {"lookup": {"": [["", "."]], "not found: ": [["Sorry."]]}}
    assert checkpoint_shapes({"data": {"answer_shapes": good}}) == good
    for bad in ([], {"": [["", "."]]}, {"calc": {"": ["", "."]}}, {"calc": {"": [["a", "b", "c"]]}},
                {"calc": {"": [[1]]}}, {"calc": {"": "x"}}):
        with pytest.raises(ValueError, match="answer_shapes"):
            checkpoint_shapes({"data": {"answer_shapes": bad}})


def test_cut_characters():
    rule = CopyRule("the capital of Québec, 1234", "lookup()")
    q = "Québec".encode()
    assert rule.allows_bytes(b"lookup(capital of " + q[:3], True)     # "Qu" + half of "é"
    assert rule.allows_bytes(b"lookup(capital of " + q, True)
    assert not rule.allows_bytes(b"lookup(capital of M\xe2", True)    # no allowed word goes on so
    assert not rule.allows_bytes(b"lookup(capital of 12\xc3", True)   # a character ends 12: not copied
    assert rule.allows_bytes(b"The answer is 1234\xc3", False)
    assert not rule.allows_bytes(b"lookup(capital of \xff)", True, final=True)  # bad bytes are no word


def test_the_tools_name_the_knowledge_base_relations(tmp_path, monkeypatch):
    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps({"capital of France": "Paris", "favourite colour of the mascot": "teal",
                              "speed of light": "c"}), encoding="utf-8")
    assert relations(kb) == ["capital", "favourite colour", "speed"]
    moons = {f"number of moons of {p}": "1" for p in ("Mars", "Earth", "Venus")}
    kb.write_text(json.dumps({**moons, "capital of France": "Paris"}), encoding="utf-8")
    assert relations(kb) == ["capital", "number", "number of moons"]  # a longer relation: 3 keys share it
    kb.write_text(json.dumps({"capital of France": "Paris", "favourite colour of the mascot": "teal",
                              "speed of light": "c"}), encoding="utf-8")
    monkeypatch.setenv("KB_PATH", str(kb))
    words = set(WORD.findall(tools_text(tool_schemas()).lower()))
    assert {"calc", "lookup", "capital", "favourite", "colour", "speed"} <= words
    assert "mascot" not in words  # entities are not named: the user has to write them
    kb.write_text("not json", encoding="utf-8")
    assert relations(kb) == []


def _rule_breaks(path: Path, tools: dict[str, str], limit: int, shapes: dict | None) -> tuple[int, list]:
    """Check every action and answer of the first `limit` conversations against the rules, with the
    conversation so far as the context, `tools[its KB]` as the tools' text and the answers that
    `shapes` make of the last tool result."""
    checked, bad = 0, []
    with path.open(encoding="utf-8") as f:
        for line, _ in zip(f, range(limit)):
            d = json.loads(line)
            tool_text, context, quoted, results = tools[d.get("kb", "kb")], "", "", []
            for i, m in enumerate(d["messages"]):
                if m["role"] in ("user", "tool"):
                    context += " " + m["content"]
                    quoted += " " + m["content"]
                    results = [] if m["role"] == "user" else results + [m["content"]]
                    continue
                last = last_result(d["messages"][:i])  # what chat_rule reads
                answers = shaped_answers(shapes, *last) if shapes and last else None
                rule = CopyRule(context, tool_text, "\n".join(results), calls=("calc", "lookup"), answers=answers,
                                quoted=quoted)
                segments = [(True, f"{c['function']['name']}({next(iter(json.loads(c['function']['arguments']).values()))})")
                            for c in m.get("tool_calls") or []] + [(False, m["content"])] * bool(m.get("content"))
                for action, text in segments * (m.get("weight") != 0):  # weight 0: history, not written here
                    checked += 1
                    if not rule.allows(text, action, final=True):
                        bad.append(text)
                context += " " + (m.get("reasoning_content") or "") + " " + (m.get("content") or "")
    return checked, bad


def test_the_training_traces_follow_the_rules(monkeypatch):
    """The rules are what the traces already do: every action and answer of the committed train and
    test splits keeps them, with the tools as the agent describes them (so decoding under them never
    forbids what the model was taught)."""
    tools = {}
    for name, kb in (("kb", DATA.parent / "kb.json"), ("invented", DATA / "kb_invented.json")):
        monkeypatch.setenv("KB_PATH", str(kb))
        tools[name] = tools_text(tool_schemas())
    with (DATA / "train.jsonl").open(encoding="utf-8") as f:  # as agent_sft.train stores it
        shapes = answer_shapes(json.loads(line) for line in f)
    assert shapes["calc"][""] == [["The answer is ", "."]] and shapes["lookup"][""] == [["", "."]]
    for split, limit in (("train.jsonl", 6000), ("test.jsonl", 10**6)):
        checked, bad = _rule_breaks(DATA / split, tools, limit, shapes)
        assert checked > 4000 and bad == [], (split, bad[:5])


def chat(engine: Engine, tok, question: str, sampling: SamplingParams, copy: CopyRule | None) -> str:
    """One chat turn's text, special tokens (the stopping one too) spelled out."""
    S = tok.special_tokens
    names = {v: k for k, v in S.items()}
    prompt = render_prompt([{"role": "user", "content": question}], tok)
    req = engine.submit(Request(prompt, 48, sampling, stop_ids={S[s] for s in CHAT_STOP_TOKENS},
                                specials_as_text=False, constrained=True, copy=copy))
    text = ""
    while not isinstance(ev := req.events.get(timeout=30), Done):
        text += ev.text + (names[ev.special] if ev.special is not None else "")
    return text


def rule_for(tok, question: str) -> CopyRule:
    messages = [{"role": "user", "content": question}]
    return chat_rule(tok, render_prompt(messages, tok), messages, tool_schemas())


def test_an_arguments_piece_is_what_the_user_or_a_tool_wrote(tiny):
    """A second question's lookup may not copy the assistant's own words: after "The answer is 5." the
    CPU model wrote lookup(atomic number of the answer) for "What's zinc's atomic number?"."""
    _, tok = tiny
    call = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"expression": "2 + 3"}'}}
    messages = [{"role": "user", "content": "What is 2 plus 3?"},
                {"role": "assistant", "content": None, "reasoning_content": "I need to compute this.",
                 "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "5"},
                {"role": "assistant", "content": "The answer is 5."},
                {"role": "user", "content": "What's zinc's atomic number?"}]
    rule = chat_rule(tok, render_prompt(messages, tok), messages, tool_schemas())
    assert rule.allows("lookup(atomic number of zinc)", True, final=True)
    for bad in ("lookup(atomic number of the answer)", "lookup(atomic number of compute this)"):
        assert "answer" in rule.words and not rule.allows(bad, True, final=True), bad
    assert CopyRule("The answer is 5.", "lookup(query): atomic number of x", calls=["lookup"]).allows(
        "lookup(atomic number of the answer)", True, final=True)  # without quoted: the whole context


def test_a_chat_requests_rule(tiny):
    """What the server builds for a chat request: the conversation's text without the special
    tokens, the tools' words, and as names only the results since the last user message."""
    _, tok = tiny
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "x"}'}}
    messages = [{"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "Paris"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And of Madagascar, times 12?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "Antananarivo"}]
    rule = chat_rule(tok, render_prompt(messages, tok), messages, tool_schemas())
    assert rule.names == {"Antananarivo"} and rule.numbers == {"12"} and rule.calls == {"calc", "lookup"}
    assert {"Paris", "paris", "madagascar", "lookup", "calc"} <= rule.words
    assert not any("|" in w for w in rule.words)  # no special token's spelling
    assert not chat_rule(tok, render_prompt(messages, tok), messages, None).check_words
    shapes = {"lookup": {"": [["The answer is ", "."]], "not found: ": [["Sorry."]]}}
    rule = chat_rule(tok, render_prompt(messages, tok), messages, tool_schemas(), shapes)
    assert rule.answers == {b"The answer is Antananarivo."}  # the last result's answers
    assert chat_rule(tok, render_prompt(messages, tok), messages[:5], tool_schemas(), shapes).answers is None  # no results


def broken(rule: CopyRule, turn: str) -> list[str]:
    """The actions and answers of a turn (text with specials spelled out) that break the rule."""
    out = []
    for tag, text, end in re.findall(r"<\|(action|answer)\|>(.*?)(<\|(?:observation|end)\|>|$)", turn, re.S):
        if not rule.allows(text, tag == "action", final=bool(end)):
            out.append(text)
    return out


def test_engine_turns_follow_the_copy_rules(tiny):
    """The tiny model memorised `calc(1234 + 5678)`; asked about 5679 it still writes 5678 without
    the rules, and copies with them. Hot sampling breaks the rules often without them, never with."""
    model, tok = tiny
    eng = Engine(model, tok, max_batch=4).start()
    try:
        q = "What is 1234 plus 5679?"
        greedy = SamplingParams(temperature=0.0)
        free = chat(eng, tok, q, greedy, None)
        ruled = chat(eng, tok, q, greedy, rule_for(tok, q))
        assert "calc(1234 + 5678)" in free
        action = re.search(r"<\|action\|>(.*?)<\|observation\|>", ruled).group(1)
        assert set(NUMBER.findall(action)) <= {"1234", "5679"} | set("0123456789"), ruled
        # a turn that breaks no rule is left alone
        same = "What is 1234 plus 5678?"
        assert chat(eng, tok, same, greedy, rule_for(tok, same)) == chat(eng, tok, same, greedy, None)
        questions = ["What is 1234 plus 5679?", "Hi there!", "What is 12 plus 5678?", "abc 77"] * 4
        hot = [SamplingParams(temperature=2.0, seed=i) for i in range(len(questions))]
        without = [broken(rule_for(tok, q), chat(eng, tok, q, s, None)) for q, s in zip(questions, hot)]
        assert sum(map(bool, without)) >= 3  # the test can fail
        for q, s in zip(questions, hot):
            assert broken(rule_for(tok, q), chat(eng, tok, q, s, rule_for(tok, q))) == []
    finally:
        eng.stop(drain=False, timeout=10)


@pytest.mark.gpu
def test_cuda_graph_engine_follows_the_copy_rules(tiny):
    """bf16 on the GPU, CUDA graphs: chat rows under a rule decode one checked step per launch, and
    keep the rules, next to unruled rows that still use several steps per launch."""
    model, tok = tiny
    model = model.to("cuda", torch.bfloat16)
    eng = Engine(model, tok, max_batch=4).start(warmup=True)
    try:
        assert eng.decode_steps > 1
        questions = ["What is 1234 plus 5679?", "Hi there!", "What is 12 plus 5678?", "abc 77"] * 3
        for i, q in enumerate(questions):
            s = SamplingParams(temperature=2.0 if i % 2 else 0.0, seed=i)
            assert broken(rule_for(tok, q), chat(eng, tok, q, s, rule_for(tok, q))) == []
    finally:
        eng.stop(drain=False, timeout=10)
