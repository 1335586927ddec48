"""The token protocol of a conversation (DESIGN.md), shared by training, serving and the agent.

    <|user|>What is 1234 plus 5678?<|end|>
    <|assistant|><|thought|>I need to add.<|action|>calc(1234 + 5678)<|observation|>6912<|answer|>6912.<|end|>

Messages are OpenAI-style dicts (user / assistant with optional reasoning_content and tool_calls /
tool). One assistant turn may span several assistant+tool message pairs before its answer.

Loss mask: 1 where the model must learn to produce the token, 0 where the token is given to it:
user turns, the `<|assistant|>` tag that opens a turn (the prompt ends with it) and the observation
text (written by the tool). The `<|observation|>` token itself is learned: emitting it is how the
model hands the action to the tool and waits. An assistant message with `"weight": 0` (OpenAI's
fine-tuning field) is context, not a lesson: all of its tokens are 0.

Past turns are sent as their question and final answer only (past_turns_as_answers): the web page
keeps that history, the agent sends it, and the multi-turn traces are written that way.
"""
from __future__ import annotations

import json
import re

# the one string argument of each tool, as named in the OpenAI function schema
TOOL_ARG_NAMES = {"calc": "expression", "lookup": "query"}
ACTION_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\s*$", re.DOTALL)


def parse_action(text: str) -> tuple[str, str] | None:
    """'calc(1234 + 5678)' -> ('calc', '1234 + 5678'); None when it is not name(argument)."""
    m = ACTION_RE.match(text)
    return (m.group(1), m.group(2).strip()) if m else None


def tool_arguments_json(name: str, argument: str) -> str:
    return json.dumps({TOOL_ARG_NAMES.get(name, "input"): argument})


def tool_argument(name: str, arguments: str | dict) -> str:
    """The single string argument from an OpenAI tool call's `arguments` (JSON text or dict)."""
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    if not isinstance(args, dict):
        raise ValueError("tool arguments must be a JSON object")
    key = TOOL_ARG_NAMES.get(name)
    if key in args:
        return str(args[key])
    strings = [v for v in args.values() if isinstance(v, (str, int, float))]
    if len(strings) != 1:
        raise ValueError(f"tool {name!r} takes one argument, got {sorted(args)}")
    return str(strings[0])


def render(messages: list[dict], tok) -> tuple[list[int], list[int]]:
    """Conversation -> (token ids, loss mask) for training."""
    S = tok.special_tokens
    ids: list[int] = []
    mask: list[int] = []

    def add(tokens: list[int], learned: int) -> None:
        ids.extend(tokens)
        mask.extend([learned] * len(tokens))

    in_turn = False  # inside an assistant turn that has not reached its answer yet
    for i, msg in enumerate(messages):
        learned = 0 if msg.get("weight") == 0 else 1
        role = msg.get("role")
        if role == "system":
            continue
        if role == "user":
            if in_turn:
                raise ValueError(f"message {i}: user message inside an unfinished assistant turn")
            add([S["<|user|>"], *tok.encode(str(msg.get("content") or "")), S["<|end|>"]], 0)
        elif role == "assistant":
            if not in_turn:
                add([S["<|assistant|>"]], 0)
                in_turn = True
            if msg.get("reasoning_content"):
                add([S["<|thought|>"], *tok.encode(msg["reasoning_content"])], learned)
            calls = msg.get("tool_calls") or []
            if len(calls) > 1:
                raise ValueError(f"message {i}: one tool call per step, got {len(calls)}")
            if calls:
                fn = calls[0]["function"]
                action = f"{fn['name']}({tool_argument(fn['name'], fn['arguments'])})"
                add([S["<|action|>"], *tok.encode(action), S["<|observation|>"]], learned)
            elif msg.get("content") is not None:
                add([S["<|answer|>"], *tok.encode(msg["content"]), S["<|end|>"]], learned)
                in_turn = False
        elif role == "tool":
            if not in_turn:
                raise ValueError(f"message {i}: tool message without a preceding tool call")
            add(tok.encode(str(msg.get("content") or "")), 0)
        else:
            raise ValueError(f"message {i}: unknown role {role!r}")
    return ids, mask


def past_turns_as_answers(messages: list[dict]) -> list[dict]:
    """The conversation as the model is asked it: every turn before the last user message keeps its
    question and its final answer; their thoughts, actions and observations are left out (the current
    turn keeps all of its steps). One form for the page, the agent and the traces, and the small
    window is left to the current turn."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if last_user < 0:
        return list(messages)
    past = [{k: v for k, v in m.items() if k != "reasoning_content"} if m.get("role") == "assistant" else m
            for m in messages[:last_user]
            if m.get("role") in ("system", "user") or (m.get("role") == "assistant" and not m.get("tool_calls"))]
    return past + list(messages[last_user:])


def render_prompt(messages: list[dict], tok) -> list[int]:
    """Token ids the model continues: ends with <|assistant|> after a user message, or with the
    observation text after a tool message (the model goes on within the same turn)."""
    if not messages:
        raise ValueError("no messages")
    last = [m for m in messages if m.get("role") != "system"][-1]
    ids, _ = render(messages, tok)
    if last["role"] == "user":
        return ids + [tok.special_tokens["<|assistant|>"]]
    if last["role"] == "tool":
        return ids
    raise ValueError("the last message must be from the user or a tool")
