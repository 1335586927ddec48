"""Terminal chat with the agent: thoughts, tool calls and the answer stream as they happen.

    python -m agent.chat                               # multi-turn REPL (Ctrl-D or /quit to leave)
    python -m agent.chat "What is 1234 plus 5678?"     # answer once and exit
    python -m agent.chat --model-url http://127.0.0.1:9000/v1 --kb my_kb.json --no-tools

Ctrl-C while the model is answering stops that answer (the HTTP stream is closed, so the server
stops generating); Ctrl-C at the prompt quits.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from agent.loop import DEFAULT_MODEL_URL, Agent

PREFIX = {"thought": "💭 ", "action": "🔧 ", "observation": "↳ ", "answer": ""}


def show_turn(agent: Agent, messages: list[dict], out: TextIO = sys.stdout) -> list[dict] | None:
    """Stream one turn to `out`. Returns the updated conversation, or None on error/interrupt."""
    events = agent.run(messages)
    color = out.isatty()
    last = None
    try:
        for ev in events:
            kind = ev["type"]
            if kind == "done":
                out.write("\n")
                return ev["messages"]
            if kind == "error":
                out.write(("\n" if last else "") + f"error: {ev['message']}\n")
                return None
            if kind == "restart":  # what was printed of this step is void; it is asked again
                out.write("\n[cut off by the context window: asking again without the oldest exchange]\n")
                last = None
                continue
            if kind != last or kind in ("action", "observation"):  # a new line per step
                out.write(("\n" if last else "") + PREFIX[kind])
            dim = color and kind != "answer"
            out.write(f"\x1b[2m{ev['delta']}\x1b[0m" if dim else ev["delta"])
            out.flush()
            last = kind
    except KeyboardInterrupt:
        out.write("\n[stopped]\n")
    finally:
        events.close()  # closes the HTTP stream: the server stops this generation
    return None


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m agent.chat",
                                description="Chat with the tool-using agent in the terminal.")
    p.add_argument("question", nargs="?", help="answer this one question and exit")
    p.add_argument("--model-url", default=DEFAULT_MODEL_URL, help="OpenAI-compatible base URL (…/v1)")
    p.add_argument("--model", default="default", help="model name sent to the server")
    p.add_argument("--kb", default=None, help="knowledge-base JSON file for the lookup tool (sets KB_PATH)")
    p.add_argument("--no-tools", action="store_true", help="do not offer tools to the model")
    p.add_argument("--max-steps", type=int, default=5, help="model calls per answer (tool steps + answer)")
    args = p.parse_args()
    if args.kb:
        os.environ["KB_PATH"] = args.kb  # agent.tools.lookup reads it at call time
    agent = Agent(args.model_url, model=args.model, tools=not args.no_tools, max_steps=args.max_steps)

    if args.question:
        sys.exit(0 if show_turn(agent, [{"role": "user", "content": args.question}]) else 1)

    print(f"chatting with {args.model_url} (Ctrl-D or /quit to leave)")
    messages: list[dict] = []
    while True:
        try:
            question = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if question in ("/quit", "/exit"):
            return
        if not question:
            continue
        updated = show_turn(agent, messages + [{"role": "user", "content": question}])
        if updated is not None:  # a failed turn is forgotten, so the next one starts clean
            messages = updated


if __name__ == "__main__":
    main()
