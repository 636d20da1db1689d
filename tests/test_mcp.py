"""MCP servers as tools: a stdio server written here with the `mcp` package; the model calls its
tool through `%%lm chat` and `lmnb.chat`; a server that dies gives an error, not a broken kernel."""

from __future__ import annotations

import json
import sys
import textwrap

import openai
import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.errors import LmnbError

pytest.importorskip("mcp")
from lmnb.tools import mcp  # noqa: E402

SERVER = textwrap.dedent('''
    import os
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")


    @server.tool()
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"18 degrees and sunny in {city}"


    @server.tool()
    def crash() -> str:
        """Stops the server at once (a server that dies)."""
        os._exit(3)


    if __name__ == "__main__":
        server.run()
''')


@pytest.fixture
def weather(tmp_path):
    script = tmp_path / "weather_server.py"
    script.write_text(SERVER)
    server = mcp.connect("weather", sys.executable, str(script))
    yield server
    mcp.disconnect("weather")


def test_a_stdio_server_lists_and_runs_its_tools(weather):
    assert sorted(t.name for t in weather.tools()) == ["crash", "get_weather"]
    [tool] = [t for t in weather.tools() if t.name == "get_weather"]
    assert tool.parameters["required"] == ["city"] and "weather" in tool.description
    assert tool.call('{"city": "Oslo"}') == "18 degrees and sunny in Oslo"


def test_the_model_calls_an_mcp_tool_from_a_chat_and_a_cell(weather, shell):
    r = lmnb.chat("What is the weather in Paris?", tools=[weather], tool_choice={"type": "function",
                  "function": {"name": "get_weather"}}, max_steps=1, temperature=0, max_tokens=60)  # fmt: skip
    assert r.steps and r.steps[0].call.name == "get_weather"
    assert r.steps[0].output.startswith("18 degrees and sunny in ")
    with capture_output() as cap:
        shell.run_cell_magic("lm", "chat --name mcpcell --tools mcp:weather --tool-choice get_weather --max-steps 1 "
                                   "-t 0 -n 60", "What is the weather in Rome?")  # fmt: skip
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "get_weather(" in html and "18 degrees and sunny" in html
    with capture_output() as cap:
        shell.run_line_magic("lm", "mcp")
    assert "weather" in cap.stdout and "get_weather" in cap.stdout
    lmnb.reset("mcpcell")


def test_a_server_that_dies_gives_a_clear_error_and_the_kernel_goes_on(weather, tmp_path):
    with pytest.raises(LmnbError, match="crash"):
        weather.call("crash", {})
    assert not weather.alive
    with pytest.raises(LmnbError, match="not running"):
        weather.call("get_weather", {"city": "Oslo"})
    # inside a chat, the failure is the tool's result, which goes back to the model
    r = lmnb.chat("Weather in Oslo?", tools=[weather], tool_choice="required", max_steps=1, temperature=0, max_tokens=60)
    assert r.steps and all(s.error for s in r.steps)
    with pytest.raises(LmnbError, match="could not start"):
        mcp.connect("nothing", str(tmp_path / "no-such-command"))
    assert lmnb.chat("Hi", max_tokens=2).text is not None  # the kernel works


def test_the_server_runs_an_mcp_tool_named_in_a_responses_request(weather, client):
    r = client.responses.create(model="", input="What is the weather in Paris?", max_output_tokens=60, temperature=0,
                                tools=[{"type": "mcp", "server_label": "weather", "require_approval": "never",
                                        "allowed_tools": ["get_weather"]}],
                                tool_choice="required")  # fmt: skip
    calls = [o for o in r.output if o.type == "mcp_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].server_label == "weather"
    assert calls[0].output.startswith("18 degrees and sunny in ") and calls[0].error is None
    assert r.output[-1].type in ("message", "function_call") and r.status in ("completed", "incomplete")
    with pytest.raises(openai.BadRequestError, match="connected in the kernel"):
        client.responses.create(model="", input="Hi", tools=[{"type": "mcp", "server_label": "elsewhere",
                                                              "server_url": "https://example.com/mcp"}])  # fmt: skip


WEATHER_MCP = {"type": "mcp", "server_label": "weather", "allowed_tools": ["get_weather"]}


def test_calls_wait_for_the_clients_approval_unless_it_says_never(weather, client):
    """OpenAI's default for mcp tools is to ask first: the call comes back as an approval request;
    the client's answer, in the next request's input, runs the call (or tells the model no)."""
    ask = "What is the weather in Paris?"
    kw = dict(model="", max_output_tokens=60, temperature=0, tools=[WEATHER_MCP])
    r = client.responses.create(input=ask, tool_choice="required", **kw)
    [req] = [o for o in r.output if o.type == "mcp_approval_request"]
    assert req.name == "get_weather" and req.server_label == "weather" and json.loads(req.arguments)["city"]
    assert not [o for o in r.output if o.type == "mcp_call"]  # nothing ran
    history = [{"role": "user", "content": ask}, req.model_dump()]
    yes = client.responses.create(input=history + [{"type": "mcp_approval_response", "approval_request_id": req.id,
                                                    "approve": True}], **kw)  # fmt: skip
    [call] = [o for o in yes.output if o.type == "mcp_call"]
    assert call.output.startswith("18 degrees and sunny in ") and call.arguments == req.arguments
    no = client.responses.create(input=history + [{"type": "mcp_approval_response", "approval_request_id": req.id,
                                                   "approve": False}], **kw)  # fmt: skip
    assert not [o for o in no.output if o.type == "mcp_call"] and no.status in ("completed", "incomplete")
    with pytest.raises(openai.BadRequestError, match="approval_request_id"):
        client.responses.create(input=[{"role": "user", "content": ask},
                                       {"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}],
                                **kw)  # fmt: skip


def test_a_streamed_response_with_mcp_tools(weather, client):
    kw = dict(model="", input="What is the weather in Paris?", max_output_tokens=60, temperature=0,
              tools=[{**WEATHER_MCP, "require_approval": "never"}], tool_choice="required")  # fmt: skip
    events = list(client.responses.create(stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] in ("response.completed",
                                                                                       "response.incomplete")
    assert "response.mcp_call.completed" in kinds
    final = events[-1].response
    [call] = [o for o in final.output if o.type == "mcp_call"]
    assert call.output.startswith("18 degrees and sunny in ")
