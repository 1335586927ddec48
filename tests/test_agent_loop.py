"""The agent loop against a scripted fake OpenAI-compatible server (tests/fake_openai.py)."""

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from agent.loop import Agent
from agent.tools import run_tool
from fake_openai import FakeOpenAI, Reply, serve

Q = [{"role": "user", "content": "What is 1234 plus 5678?"}]


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAI()
    with serve(fake.app) as url:
        yield fake, url + "/v1"


@pytest.fixture
def run_script(server):
    """run_script(script, **agent_kw) -> (events, fake): one agent turn against this script."""
    fake, url = server

    def run(script, messages=Q, delay=0.0, **kw):
        fake.reset(script, delay)
        return list(Agent(url, **kw).run(messages)), fake
    return run


def collapse(events):
    """Event types with runs of the same streamed type merged: the shape of the turn."""
    out = []
    for e in events:
        if not out or out[-1] != e["type"] or e["type"] in ("action", "observation"):
            out.append(e["type"])
    return out


def text(events, kind):
    return "".join(e["delta"] for e in events if e["type"] == kind)


def test_thought_action_observation_answer(run_script):
    events, fake = run_script([
        Reply(thought="I need to add 1234 and 5678.", tool="calc", args={"expression": "1234 + 5678"}),
        Reply(thought="Got it.", answer="1234 plus 5678 is 6912."),
    ])
    assert collapse(events) == ["thought", "action", "observation", "thought", "answer", "done"]
    assert len([e for e in events if e["type"] == "thought"]) > 3  # streamed token by token
    action = next(e for e in events if e["type"] == "action")
    assert action == {"type": "action", "delta": "calc(1234 + 5678)", "tool": "calc",
                      "argument": "1234 + 5678"}
    assert text(events, "observation") == "6912"  # computed by the real calc tool
    assert text(events, "answer") == "1234 plus 5678 is 6912."

    msgs = events[-1]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    call = msgs[1]["tool_calls"][0]
    assert msgs[1]["reasoning_content"] == "I need to add 1234 and 5678."
    assert call["function"] == {"name": "calc", "arguments": json.dumps({"expression": "1234 + 5678"})}
    assert msgs[2] == {"role": "tool", "tool_call_id": call["id"], "content": "6912"}
    assert msgs[3]["content"] == "1234 plus 5678 is 6912." and msgs[3]["reasoning_content"] == "Got it."

    first, second = fake.requests
    assert first["stream"] is True and first["temperature"] == 0
    assert [t["function"]["name"] for t in first["tools"]] == ["calc", "lookup"]
    assert first["messages"] == Q
    assert second["messages"] == msgs[:3]  # the tool result went back to the model
    assert Q == [{"role": "user", "content": "What is 1234 plus 5678?"}]  # caller's list untouched


def test_multi_step_with_lookup(tmp_path, monkeypatch, run_script):
    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps({"population of testland": "1200"}))
    monkeypatch.setenv("KB_PATH", str(kb))
    events, fake = run_script([
        Reply(thought="Look it up.", tool="lookup", args={"query": "population of Testland"}),
        Reply(thought="Now double it.", tool="calc", args={"expression": "1200 * 2"}),
        Reply(answer="Twice the population is 2400."),
    ])
    assert collapse(events) == ["thought", "action", "observation", "thought", "action", "observation",
                                "answer", "done"]
    assert [e["delta"] for e in events if e["type"] == "observation"] == ["1200", "2400"]
    assert len(fake.requests) == 3
    tool_msgs = [m for m in fake.requests[2]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["1200", "2400"]


@pytest.mark.parametrize("reply, expected", [
    (Reply(tool="calc", args={"expression": "1/0"}), run_tool("calc", "1/0")),
    (Reply(tool="search", args={"query": "news"}), run_tool("search", "news")),
    (Reply(tool="calc", raw_args='{"expression": "1+'), "error: tool arguments are not valid JSON"),
    (Reply(tool="calc", args={"expr": 5}), 'error: calc expects {"expression": "..."}'),
], ids=["tool-error", "unknown-tool", "bad-json", "wrong-argument"])
def test_tool_problems_become_observations(reply, expected, run_script):
    assert expected.startswith("error:")
    events, fake = run_script([reply, Reply(answer="Sorry, that failed.")])
    assert collapse(events) == ["action", "observation", "answer", "done"]
    obs = text(events, "observation")
    assert obs.startswith(expected)
    tool_msg = fake.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == obs  # the model sees the error


def test_division_by_zero_reaches_the_model(run_script):
    events, fake = run_script([Reply(tool="calc", args={"expression": "1/0"}), Reply(answer="Undefined.")])
    assert fake.requests[1]["messages"][-1]["content"] == "error: division by zero"


def test_step_limit(run_script):
    loop = [Reply(tool="calc", args={"expression": f"{i} + 1"}) for i in range(5)]
    events, fake = run_script(loop, max_steps=3)
    assert len(fake.requests) == 3
    assert collapse(events) == ["action", "observation", "action", "observation", "error"]
    assert "step limit" in events[-1]["message"]


@pytest.mark.parametrize("reply, message", [
    (Reply(status=500), "HTTP 500: scripted failure 500"),
    (Reply(status=400), "HTTP 400: scripted failure 400"),
    (Reply(raw_lines=["data: {not json"]), "malformed stream"),
    (Reply(raw_lines=["hello"]), "malformed stream"),
    (Reply(raw_lines=['data: {"error": {"message": "out of memory"}}']), "out of memory"),
    (Reply(answer="half an ans", truncate=True), "closed the stream"),
], ids=["500", "400", "bad-json", "not-sse", "error-chunk", "truncated"])
def test_server_errors_are_error_events(reply, message, run_script):
    events, _ = run_script([reply])
    assert events[-1]["type"] == "error" and message in events[-1]["message"]
    assert all(e["type"] != "done" for e in events)


def test_a_conversation_too_long_for_the_window_drops_its_oldest_exchanges(run_script):
    """400 context_length_exceeded: the turn asks again without the oldest exchange (a system message
    stays), until it fits; the history it returns keeps everything. With only the current exchange
    left, the error stands."""
    too_long = Reply(status=400, code="context_length_exceeded")
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": None,
                "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "calc", "arguments": '{"expression": "2 + 2"}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "4"}, {"role": "assistant", "content": "4."},
               {"role": "user", "content": "Thanks!"}]
    events, fake = run_script([too_long, too_long, Reply(answer="You're welcome!")], messages=history)
    assert events[-1]["type"] == "done" and text(events, "answer") == "You're welcome!"
    sent = [[m["content"] for m in r["messages"]] for r in fake.requests]
    # past turns travel as question and answer (the calc step of "What is 2 + 2?" is left out)
    assert sent == [["Be brief.", "Hi!", "Hello!", "What is 2 + 2?", "4.", "Thanks!"],
                    ["Be brief.", "What is 2 + 2?", "4.", "Thanks!"], ["Be brief.", "Thanks!"]]
    assert events[-1]["messages"][:-1] == history
    events, fake = run_script([too_long, too_long, too_long], messages=history)
    assert events[-1]["type"] == "error" and "HTTP 400" in events[-1]["message"] and len(fake.requests) == 3
    events, _ = run_script([Reply(status=400)], messages=history)  # another 400: no retry
    assert events[-1]["type"] == "error"


def test_past_turns_are_sent_as_question_and_answer_and_the_current_turn_whole(run_script):
    """The model is asked past turns as the page keeps them (question, final answer: no thoughts, actions
    or observations); the current turn's own steps are all sent; the returned history keeps everything."""
    history = [{"role": "user", "content": "What is 2 + 2?"},
               {"role": "assistant", "content": None, "reasoning_content": "I need to compute this.",
                "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "calc", "arguments": '{"expression": "2 + 2"}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "4"},
               {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "Done."},
               {"role": "user", "content": "What is that times 3?"}]
    events, fake = run_script([Reply(thought="I need to compute this.", tool="calc", args={"expression": "4 * 3"}),
                               Reply(answer="The answer is 12.")], messages=history)
    assert text(events, "answer") == "The answer is 12."
    first, second = [r["messages"] for r in fake.requests]
    assert first == [{"role": "user", "content": "What is 2 + 2?"},
                     {"role": "assistant", "content": "The answer is 4."}, history[-1]]
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant", "tool"]
    assert second[3]["tool_calls"][0]["function"]["arguments"] == '{"expression": "4 * 3"}' and second[4]["content"] == "12"
    assert events[-1]["messages"][:5] == history and len(events[-1]["messages"]) == 8


def test_an_answer_cut_off_by_the_window_is_asked_again_with_less_history(run_script):
    """finish_reason "length" with fewer tokens than max_tokens (the usage says so): the window cut the
    answer off. The turn says `restart` and asks again without the oldest exchange; the history keeps
    everything. Cut off by max_tokens, or with nothing older to leave out, the answer stands."""
    history = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "What is 2 + 2?"}]
    cut = Reply(thought="I need to compute this.", answer="The answer", finish_reason="length", completion_tokens=9)
    events, fake = run_script([cut, Reply(answer="The answer is 4.", completion_tokens=6)], messages=history,
                              max_tokens=128)
    assert [e["type"] for e in events].count("restart") == 1
    assert collapse(events) == ["thought", "answer", "restart", "answer", "done"]
    assert [[m["content"] for m in r["messages"]] for r in fake.requests] == [
        ["Hi!", "Hello!", "What is 2 + 2?"], ["What is 2 + 2?"]]
    assert all(r["stream_options"] == {"include_usage": True} for r in fake.requests)
    assert events[-1]["messages"] == history + [{"role": "assistant", "content": "The answer is 4."}]
    events, fake = run_script([cut], messages=history, max_tokens=9)  # max_tokens ended it
    assert "restart" not in collapse(events) and events[-1]["finish_reason"] == "length"
    events, fake = run_script([cut], messages=history[2:])  # nothing older to leave out
    assert "restart" not in collapse(events) and events[-1]["messages"][-1]["content"] == "The answer"
    events, fake = run_script([cut, Reply(answer="4.")], messages=history)  # no max_tokens: only the window
    assert collapse(events)[-3:] == ["restart", "answer", "done"] and len(fake.requests) == 2


def test_connection_refused():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events = list(Agent(f"http://127.0.0.1:{port}/v1").run(Q))
    assert len(events) == 1 and events[0]["type"] == "error"
    assert "cannot reach the model server" in events[0]["message"]


def test_bad_messages_are_an_error_event():
    assert list(Agent("http://127.0.0.1:9/v1").run([]))[0]["type"] == "error"
    assert list(Agent("http://127.0.0.1:9/v1").run("hi"))[0]["type"] == "error"


def test_no_tools_mode(run_script):
    events, fake = run_script([Reply(answer="Hello there!")], tools=False)
    assert "tools" not in fake.requests[0]
    assert collapse(events) == ["answer", "done"] and text(events, "answer") == "Hello there!"


def test_async_run_gives_the_same_events(run_script, server):
    script = [Reply(thought="Add.", tool="calc", args={"expression": "2 + 2"}), Reply(answer="4.")]
    sync_events, fake = run_script(script)

    async def collect():
        return [e async for e in Agent(server[1]).arun(Q)]

    fake.reset(script)
    async_events = asyncio.run(collect())
    for e in sync_events + async_events:  # tool_call ids differ per server request only
        e.pop("messages", None)
    assert async_events == sync_events


def test_closing_the_generator_closes_the_stream(server):
    fake, url = server
    fake.reset([Reply(answer="a very slow answer " * 20)], delay=0.05)
    events = Agent(url).run(Q)
    assert next(events)["type"] == "answer"
    events.close()
    assert fake.disconnected.wait(5), "the server never saw the client go away"
    assert fake.completed == 0


def test_terminal_chat_one_question(server, tmp_path):
    fake, url = server
    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps({"capital of testland": "Testville"}))
    fake.reset([Reply(thought="Look it up.", tool="lookup", args={"query": "capital of Testland"}),
                Reply(answer="It is Testville.")])
    out = subprocess.run([sys.executable, "-m", "agent.chat", "--model-url", url, "--kb", str(kb),
                          "What is the capital of Testland?"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["💭 Look it up.", "🔧 lookup(capital of Testland)", "↳ Testville",
                                       "It is Testville."]
    fake.reset([Reply(status=503)])
    out = subprocess.run([sys.executable, "-m", "agent.chat", "--model-url", url, "Hi"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "HTTP 503" in out.stdout
