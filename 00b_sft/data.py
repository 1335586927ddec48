"""Instruction data for SFT: load + validate conversations, and a deterministic train/val split.

The data file is JSONL, one `{"messages": [...], "category": ...}` per line, in the conversation
format shared with agent_sft, the model server and the agent loop (see notes/CONTRACT.md).
The hand-written chat set lives in `00b_sft/data/conversations.jsonl`.

    python -m sft.data --stats          # counts per category and split
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "conversations.jsonl"


class DataError(ValueError):
    """A data file that does not hold valid conversations; the message names file and line."""


def _check_tool_call(calls: object) -> str | None:
    """Return an error message for a malformed `tool_calls` list, or None when it is fine."""
    # The contract allows one tool call per assistant message (one action per step).
    if not isinstance(calls, list) or len(calls) != 1:
        return "'tool_calls' must be a list with exactly one call"
    call = calls[0]
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(fn, dict):
        return "a tool call needs a string 'id' and a 'function' object"
    if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
        return "a tool call's function needs string 'name' and 'arguments'"
    return None


def validate_conversation(obj: object) -> None:
    """Raise ValueError (without location) if `obj` is not a valid conversation.

    Valid: optional leading system messages, then one or more turns. A turn is a user message,
    then zero or more (assistant with one tool call, tool message answering it) steps, then an
    assistant message with string `content` (the answer). The conversation ends with an answer.
    """
    if not isinstance(obj, dict):
        raise ValueError("a line must be a JSON object")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty list")
    if "category" in obj and not isinstance(obj["category"], str):
        raise ValueError("'category' must be a string")
    expect = "user"  # what may come next: "user" | "assistant" | "tool"
    pending_id = None  # id of the tool call awaiting its tool message
    seen_user = False
    for i, m in enumerate(msgs):
        where = f"message {i}"
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"{where}: missing 'role'")
        role = m["role"]
        if role == "system" and not seen_user:
            if not isinstance(m.get("content"), str):
                raise ValueError(f"{where}: system 'content' must be a string")
            continue
        if role != expect:
            raise ValueError(f"{where}: expected role {expect!r}, got {role!r}")
        if role == "user":
            if not isinstance(m.get("content"), str):
                raise ValueError(f"{where}: user 'content' must be a string")
            seen_user, expect = True, "assistant"
        elif role == "assistant":
            if m.get("reasoning_content") is not None and not isinstance(m["reasoning_content"], str):
                raise ValueError(f"{where}: 'reasoning_content' must be a string or null")
            if "weight" in m and m["weight"] not in (0, 1):
                raise ValueError(f"{where}: 'weight' must be 0 (context only) or 1 (learned)")
            if m.get("tool_calls"):
                err = _check_tool_call(m["tool_calls"])
                if err:
                    raise ValueError(f"{where}: {err}")
                if m.get("content") is not None and not isinstance(m["content"], str):
                    raise ValueError(f"{where}: assistant 'content' must be a string or null")
                pending_id, expect = m["tool_calls"][0]["id"], "tool"
            else:
                if not isinstance(m.get("content"), str):
                    raise ValueError(f"{where}: assistant answer 'content' must be a string")
                expect = "user"
        else:  # tool
            if m.get("tool_call_id") != pending_id:
                raise ValueError(f"{where}: tool_call_id does not match the call {pending_id!r}")
            if not isinstance(m.get("content"), str):
                raise ValueError(f"{where}: tool 'content' must be a string")
            expect = "assistant"
    if expect != "user":
        raise ValueError("conversation must end with an assistant answer")


def load_conversations(path: str | Path | None = None) -> list[dict]:
    """Load and validate a JSONL conversation file (default: the bundled chat set).

    Blank lines are skipped. Any bad line raises DataError naming the file and line number.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    convs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            try:
                validate_conversation(obj)
            except ValueError as e:
                raise DataError(f"{path}:{lineno}: {e}") from None
            convs.append(obj)
    if not convs:
        raise DataError(f"{path}: no conversations")
    return convs


def _first_user(conv: dict) -> str:
    return next(m["content"] for m in conv["messages"] if m["role"] == "user")


def is_val(conv: dict, val_fraction: float = 0.1, seed: int = 0) -> bool:
    """Which side a conversation falls on, from a hash of its first user message alone.

    A content hash (not Python's salted hash(), not the line position) keeps the split identical
    across processes and unchanged for existing lines when new lines are appended. Case and
    whitespace are normalized so trivially different spellings land on the same side.
    """
    key = " ".join(_first_user(conv).casefold().split())
    digest = hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split(convs: list[dict], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split into (train, val), keeping the input order inside each side."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = [], []
    for c in convs:
        (val if is_val(c, val_fraction, seed) else train).append(c)
    return train, val


def stats_table(convs: list[dict], val_fraction: float = 0.1, seed: int = 0) -> str:
    """A plain-text table of conversation counts per category and split."""
    train, val = split(convs, val_fraction, seed)
    tr = Counter(c.get("category", "(none)") for c in train)
    va = Counter(c.get("category", "(none)") for c in val)
    rows = [f"{'category':<14}{'train':>7}{'val':>6}{'total':>7}"]
    for cat in sorted(set(tr) | set(va)):
        rows.append(f"{cat:<14}{tr[cat]:>7}{va[cat]:>6}{tr[cat] + va[cat]:>7}")
    rows.append(f"{'all':<14}{len(train):>7}{len(val):>6}{len(convs):>7}")
    n_turns = sum(sum(m["role"] == "user" for m in c["messages"]) for c in convs)
    rows.append(f"user turns: {n_turns}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sft.data", description=__doc__.split("\n")[0])
    p.add_argument("--path", default=None, help=f"JSONL conversation file (default: {DEFAULT_PATH})")
    p.add_argument("--stats", action="store_true", help="print counts per category and split")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of conversations in val")
    p.add_argument("--seed", type=int, default=0, help="seed mixed into the split hash")
    args = p.parse_args(argv)
    try:
        convs = load_conversations(args.path)
        table = stats_table(convs, args.val_fraction, args.seed)
    except (DataError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    if args.stats:
        print(table)
    else:
        print(f"{len(convs)} valid conversations in {args.path or DEFAULT_PATH} (use --stats for counts)")


if __name__ == "__main__":
    main()
