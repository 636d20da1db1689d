"""MCP servers as tools: a stdio server written here with the `mcp` package; the model calls its
tool through `%%lm chat` and `lmnb.chat`; a server that dies gives an error, not a broken kernel."""

from __future__ import annotations

import sys
import textwrap

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
    import openai

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
