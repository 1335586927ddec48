"""A checkpoint's answer shapes: how the answers it was trained on report a tool result.

After tool results, the traces' answers copy the last result and say little else, and what they say
depends on the tool and on what kind of result it was:

    tool    result                       answers                       shapes
    lookup  "Paris"                      "Paris."                      ["", "."]
    calc    "6912"                       "The answer is 6912."         ["The answer is ", "."]
    lookup  "not found: capital of x"    "Sorry, I don't know that."   ["Sorry, I don't know that."]
    calc    "error: division by zero"    "You can't divide by zero."   ["You can't divide by zero."]

A shape is [before, after] (the answer is before + the result + after) or [text] (the answer says
no result). A result's kind: a value (""), or one with a label ("not found: ", "error: "). Where
the training answers all messages of a label alike ("not found: ..."), the label is the kind;
otherwise each message is a kind of its own ("error: division by zero"). A kind the training never
answered (an error message it never saw) gets the tool's shapes that copy nothing.

answer_shapes() reads them from the training conversations, agent_sft.train stores them in the
checkpoint's meta.json (data.answer_shapes), and the server holds the answers after tool results to
shaped_answers(): the few answers that the shapes make of the last result (copying.py).
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

LABEL = re.compile(r"[a-z]+(?: [a-z]+)*: ")  # "not found: ", "error: "
MAX_SHAPES = 32  # more distinct shapes than this: the answers say more than a few things; store none

Shapes = dict[str, dict[str, list[list[str]]]]  # tool -> kind -> shapes


def last_result(messages: Iterable[dict]) -> tuple[str, str] | None:
    """(tool name, result) of the last tool message since the last user message, or None."""
    names: dict[str, str] = {}  # tool call id -> the name it called
    last = None
    for m in messages:
        if m.get("role") == "user":
            last = None
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = names[""] = str(call["function"].get("name"))
        if m.get("role") == "tool":
            last = (names.get(str(m.get("tool_call_id")), names.get("", "")), str(m.get("content") or ""))
    return last


def _reported(conv: dict) -> Iterator[tuple[str, str, str]]:
    """(tool, result, answer) for each answer of a conversation that follows tool results."""
    messages = conv.get("messages", [])
    for i, m in enumerate(messages):
        if m.get("role") == "assistant" and m.get("content") and (last := last_result(messages[:i])):
            yield *last, m["content"]


def _shape(answer: str, result: str) -> list[str]:
    """[before, after] around the answer's last copy of the result, or [answer] without one."""
    if result and result in answer:
        before, _, after = answer.rpartition(result)
        return [before, after]
    return [answer]


def answer_shapes(conversations: Iterable[dict]) -> Shapes | None:
    """{tool: {kind: [shape, ...]}} of the answers after tool results in training conversations
    (OpenAI messages), each answer shaped around the last result before it; None if there are more
    than MAX_SHAPES distinct shapes (answers in free words: no shapes hold them)."""
    shapes: Shapes = {}
    labelled: dict[tuple[str, str], dict[str, list[list[str]]]] = {}  # (tool, label) -> message -> shapes
    for conv in conversations:
        for tool, result, answer in _reported(conv):
            label = LABEL.match(result)
            seen = (labelled.setdefault((tool, label.group()), {}).setdefault(result, []) if label
                    else shapes.setdefault(tool, {}).setdefault("", []))
            if (shape := _shape(answer, result)) not in seen:
                seen.append(shape)
    for (tool, label), messages in labelled.items():
        answered = [sorted(s) for s in messages.values()]
        if all(a == answered[0] for a in answered):  # a message with a varying part ("not found: ...")
            shapes.setdefault(tool, {})[label] = answered[0]
        else:  # fixed messages, each answered its own way
            shapes.setdefault(tool, {}).update(messages)
    if len({tuple(s) for kinds in shapes.values() for ss in kinds.values() for s in ss}) > MAX_SHAPES:
        return None
    return shapes


def shaped_answers(shapes: Shapes, tool: str, result: str) -> list[str] | None:
    """The answers the shapes allow after `result` of `tool` (the last tool result); None for a
    tool they do not know."""
    kinds = shapes.get(tool)
    if not kinds:
        return None
    label = LABEL.match(result)
    kind = "" if not label else result if result in kinds else label.group()
    if kind in kinds:
        return [s[0] if len(s) == 1 else s[0] + result + s[1] for s in kinds[kind]]
    # a kind never answered in training: say something, copy nothing
    return sorted({s[0] for ss in kinds.values() for s in ss if len(s) == 1}) or None


def checkpoint_shapes(meta: dict) -> Shapes | None:
    """A checkpoint's answer shapes (meta.json data.answer_shapes), None if it has none; ValueError
    if they are malformed."""
    data = meta.get("data")
    shapes = data.get("answer_shapes") if isinstance(data, dict) else None
    if shapes is None:
        return None
    if not (isinstance(shapes, dict) and all(isinstance(kinds, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(
                isinstance(s, list) and len(s) in (1, 2) and all(isinstance(x, str) for x in s) for s in v)
            for k, v in kinds.items()) for kinds in shapes.values())):
        raise ValueError("meta.json data.answer_shapes must map a tool to its result kinds, and a kind to "
                         "a list of shapes, each a list of one or two strings")
    return shapes
