"""A checkpoint's report vocabulary: how the answers it was trained on go around tool results.

After a tool result, the traces' answers copy the result and say little else: "Paris.", "The answer
is 6912.", "Sorry, I don't know that.". report_vocabulary() collects, over the training
conversations, what those answers write besides the results: their other words, the runs of other
characters, the words they start and end with and two such words in a row. agent_sft.train stores it
in the checkpoint's meta.json (data.report_vocabulary), and copying.CopyRule holds the answers of a
chat turn with tool results to it.
"""
from __future__ import annotations

import re
from typing import Iterable

WORD = re.compile(r"[^\W\d_]+")
RUN = re.compile(r"[\W_]+")


def runs_of(text: str) -> set[str]:
    """The runs of characters that are not letters or digits ("^" marks one that starts the text,
    "$" one that ends it)."""
    return {marked_run(m, text) for m in RUN.finditer(text)}


def marked_run(m: re.Match, text: str) -> str:
    return ("^" if m.start() == 0 else "") + m.group() + ("$" if m.end() == len(text) else "")


def report_vocabulary(conversations: Iterable[dict]) -> dict:
    """How answers after tool results go around what the results hold, over training conversations
    (OpenAI messages): {"words": their other words, "runs": their runs of other characters (see
    runs_of), "starts" and "ends": such words they start or end with, "pairs": two such words in a
    row, as written ("Sorry, I")}. A checkpoint stores it (meta.json data.report_vocabulary); the
    server holds such answers to it."""
    words, runs, starts, ends, pairs = set(), set(), set(), set(), set()
    for conv in conversations:
        results: list[str] = []
        for m in conv.get("messages", ()):
            if m.get("role") == "user":
                results = []
            elif m.get("role") == "tool":
                results.append(str(m.get("content") or ""))
            elif m.get("role") == "assistant" and m.get("content") and results:
                text, said = m["content"], set(WORD.findall("\n".join(results)))
                seq = list(WORD.finditer(text))
                own = [w.group() not in said for w in seq]
                words |= {w.group() for w, o in zip(seq, own) if o}
                starts |= {w.group() for w, o in zip(seq, own) if o and w.start() == 0}
                ends |= {seq[-1].group()} if seq and own[-1] and not WORD.search(text[seq[-1].end():]) else set()
                pairs |= {text[a.start():b.end()] for a, b, oa, ob in zip(seq, seq[1:], own, own[1:]) if oa and ob}
                runs |= runs_of(text) - set().union(*map(runs_of, results))
    return {"words": sorted(words), "runs": sorted(runs), "starts": sorted(starts), "ends": sorted(ends),
            "pairs": sorted(pairs)}


def checkpoint_report(meta: dict) -> dict | None:
    """A checkpoint's report vocabulary (meta.json data.report_vocabulary), None if it has none;
    ValueError if it is malformed."""
    data = meta.get("data")
    report = data.get("report_vocabulary") if isinstance(data, dict) else None
    if report is None:
        return None
    lists = ("words", "runs", "starts", "ends", "pairs")
    if not (isinstance(report, dict) and all(isinstance(report.get(k), list) and all(isinstance(x, str) for x in report[k])
                                             for k in lists)):
        raise ValueError("meta.json data.report_vocabulary must hold lists of strings: " + ", ".join(lists))
    return report
