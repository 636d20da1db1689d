"""Tool calling: tools from Python functions or OpenAI dicts, each model family's call format, and
the grammars that keep calls well-formed.

- ``spec``: ``Tool`` (name, description, JSON Schema of the arguments, the function) and ``as_tools``.
- ``formats``: how each family writes calls, detected from the chat template, and their parsers.
- ``grammar``: GBNF for calls whose arguments match the tool's schema.
- ``plan``: one request with tools, ready for one model: its messages, grammar and output stage.
"""

from .spec import Tool, as_tools

__all__ = ["Tool", "as_tools"]
