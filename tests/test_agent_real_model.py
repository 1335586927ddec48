"""The agent loop against the real 03_model server (tiny overfit checkpoint), with the real calc tool:
the model's action goes over HTTP as a tool call, the loop runs calc, the model reads 6912 back."""
import pytest

from agent.loop import Agent
from live_server import Server
from tiny_checkpoint import CHAT_PROMPT, TOOL_PROMPT, make_tiny_run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(make_tiny_run(tmp_path_factory.mktemp("agent_real")))
    yield srv
    srv.close()


def test_tool_turn_through_the_real_server(server):
    events = list(Agent(server.url + "/v1").run([{"role": "user", "content": TOOL_PROMPT}]))
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events
    text = {k: "".join(e["delta"] for e in events if e["type"] == k) for k in ("thought", "action", "observation", "answer")}
    assert text["thought"] == "I need to compute 1234 + 5678."
    assert text["action"] == "calc(1234 + 5678)"
    assert text["observation"] == "6912"  # computed by agent.tools.calc, not by the model
    assert text["answer"] == "6912."
    assert kinds.index("action") < kinds.index("observation") < kinds.index("answer") < kinds.index("done")
    messages = events[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]


def test_plain_chat_uses_no_tool(server):
    events = list(Agent(server.url + "/v1").run([{"role": "user", "content": CHAT_PROMPT}]))
    assert not [e for e in events if e["type"] in ("action", "observation", "error")]
    assert "".join(e["delta"] for e in events if e["type"] == "answer") == "Hello! How can I help?"
