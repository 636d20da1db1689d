"""Structured output (``schema=``, ``%%lm --json`` / ``--schema``) on the real bundled SmolLM2.

The grammar makes every reply parse, whatever the sampling: each schema kind is run with
temperature 0.8 and several seeds, and every output must validate. Strings and arrays carry
maxLength / maxItems so that a 135M model cannot ramble past max_tokens.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, TypedDict

import pytest
from IPython.core.error import UsageError
from pydantic import BaseModel, Field, field_validator

import lmnb
from lmnb import gbnf, structured
from lmnb.errors import LmnbError, StructuredOutputError

from .conftest import final_reply, run_cell

SEEDS = [1, 2, 3]
# Room for the longest reply the test schemas allow: at temperature 0.8 the model sometimes fills
# a string with emoji, up to 4 byte tokens per character (a cut-off is tested on its own below).
MAX_TOKENS = 400


class Address(BaseModel):
    city: str = Field(max_length=24)
    country: str = Field(max_length=24)


class Person(BaseModel):
    name: str = Field(max_length=24)
    age: int = Field(ge=0, le=120)
    role: Literal["engineer", "artist", "doctor", "teacher"]
    skills: list[Annotated[str, Field(max_length=16)]] = Field(max_length=3)
    address: Address


@dataclass
class Book:
    title: Annotated[str, Field(max_length=30)]
    year: Annotated[int, Field(ge=1500, le=2030)]
    tags: Annotated[list[Annotated[str, Field(max_length=12)]], Field(max_length=3)]
    subtitle: Optional[Annotated[str, Field(max_length=20)]] = None


class Movie(TypedDict):  # typing.TypedDict: pydantic refuses it before 3.12, lmnb converts it
    title: Annotated[str, Field(max_length=30)]
    year: Annotated[int, Field(ge=1900, le=2030)]
    genre: Literal["drama", "comedy", "horror", "sci-fi"]


class RatedMovie(Movie, total=False):
    rating: Annotated[int, Field(ge=1, le=5)]


@dataclass
class Author:  # plain types only: what the fallback without pydantic handles
    name: str
    born: int


@dataclass
class Novel:
    title: str
    pages: int
    price: float
    in_print: bool
    genres: list[Literal["drama", "comedy", "fantasy"]]
    author: Author
    sequel: Optional[str] = None


RECIPE = {
    "type": "object",
    "properties": {
        "dish": {"type": "string", "maxLength": 24},
        "difficulty": {"enum": ["easy", "medium", "hard"]},
        "servings": {"type": "integer", "minimum": 1, "maximum": 12},
        "ingredients": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3},
        "chef": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 16},
                           "stars": {"type": "integer", "minimum": 0, "maximum": 3}},
            "required": ["name", "stars"],
            "additionalProperties": False,
        },
    },
    "required": ["dish", "difficulty", "servings", "ingredients", "chef"],
    "additionalProperties": False,
}


def ask(schema, prompt: str, seed: int, **kw):
    return lmnb.chat(prompt, schema=schema, temperature=0.8, seed=seed, max_tokens=MAX_TOKENS, **kw)


# ---- every schema kind, several seeds: always valid ----------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_pydantic_model(loaded, seed):
    r = ask(Person, "Invent a person and describe them as JSON.", seed)
    assert r.finish_reason == "stop", r.text
    assert isinstance(r.parsed, Person) and isinstance(r.parsed.address, Address)
    assert r.parsed == Person.model_validate_json(r.text)
    assert r.parsed.role in ("engineer", "artist", "doctor", "teacher") and len(r.parsed.skills) <= 3


@pytest.mark.parametrize("seed", SEEDS)
def test_dataclass(loaded, seed):
    r = ask(Book, "Describe a famous book as JSON.", seed)
    assert r.finish_reason == "stop", r.text
    assert isinstance(r.parsed, Book)
    assert 1500 <= r.parsed.year <= 2030 and len(r.parsed.tags) <= 3
    assert dataclasses.asdict(r.parsed) == {**{"subtitle": None}, **json.loads(r.text)}


@pytest.mark.parametrize("seed", SEEDS)
def test_typeddict(loaded, seed):
    r = ask(RatedMovie, "Describe a movie as JSON.", seed)
    assert r.finish_reason == "stop", r.text
    movie = r.parsed
    assert isinstance(movie, dict) and movie == json.loads(r.text)
    assert {"title", "year", "genre"} <= set(movie) <= {"title", "year", "genre", "rating"}
    assert movie["genre"] in ("drama", "comedy", "horror", "sci-fi") and 1900 <= movie["year"] <= 2030
    assert 1 <= movie.get("rating", 1) <= 5


@pytest.mark.parametrize("seed", SEEDS)
def test_json_schema_dict(loaded, seed):
    import jsonschema

    r = ask(RECIPE, "Give me a recipe as JSON.", seed)
    assert r.finish_reason == "stop", r.text
    jsonschema.validate(r.parsed, RECIPE)
    assert r.parsed == json.loads(r.text)


def test_enum_array_and_nested_constraints(loaded):
    # the same constraints, spelled out: what the grammar allowed is what the schema says
    for seed in (11, 12):
        d = ask(RECIPE, "A recipe as JSON, please.", seed).parsed
        assert list(d) == ["dish", "difficulty", "servings", "ingredients", "chef"]  # schema order
        assert d["difficulty"] in ("easy", "medium", "hard")
        assert 1 <= d["servings"] <= 12
        assert 1 <= len(d["ingredients"]) <= 3 and all(len(i) <= 12 for i in d["ingredients"])
        assert set(d["chef"]) == {"name", "stars"} and 0 <= d["chef"]["stars"] <= 3


def test_any_json_object(loaded):
    for seed in SEEDS:
        r = lmnb.chat("Give a JSON object with the keys name and city for a person.", schema="json",
                      temperature=0.8, seed=seed, max_tokens=MAX_TOKENS)
        assert r.finish_reason == "stop" and isinstance(r.parsed, dict) and r.parsed == json.loads(r.text)


def test_complete_with_schema(loaded):
    r = lmnb.complete('A person as JSON: ', schema=Person, temperature=0.8, seed=5, max_tokens=MAX_TOKENS)
    assert isinstance(r.parsed, Person)


def test_plain_reply_has_no_parsed(loaded):
    assert lmnb.chat("Hi", max_tokens=4, temperature=0).parsed is None


def test_streaming_gives_the_parsed_object_at_the_end(loaded):
    req = lmnb.chat("Invent a person.", schema=Person, stream=True, temperature=0.8, seed=4, max_tokens=MAX_TOKENS)
    text = "".join(req)
    res = req.result()
    assert res.text == text and isinstance(res.parsed, Person)
    assert res.parsed == Person.model_validate_json(text)


# ---- failures say what happened -------------------------------------------------------------------
def test_max_tokens_too_small(loaded):
    with pytest.raises(StructuredOutputError, match=r"cut off at max_tokens=6 .*Raise max_tokens") as e:
        lmnb.chat("Invent a person.", schema=Person, temperature=0, max_tokens=6)
    assert isinstance(e.value, LmnbError)
    assert e.value.finish_reason == "length" and e.value.text.startswith("{")
    assert e.value.completion.usage.completion_tokens == 6
    # streaming: .parsed is None, and parse() says why
    req = lmnb.chat("Invent a person.", schema=Person, stream=True, temperature=0, max_tokens=6)
    res = req.result()
    assert res.parsed is None and res.finish_reason == "length"
    with pytest.raises(StructuredOutputError, match="max_tokens=6"):
        structured.parse(res.text, Person, res.finish_reason, max_tokens=res.params.max_tokens)


def test_validation_the_grammar_cannot_express(loaded):
    class Ada(BaseModel):
        name: str = Field(max_length=10)

        @field_validator("name")
        @classmethod
        def only_ada(cls, v: str) -> str:
            if v != "Ada-Lovelace-1815":
                raise ValueError("the name must be Ada-Lovelace-1815")
            return v

    with pytest.raises(StructuredOutputError, match="must be Ada-Lovelace-1815") as e:
        lmnb.chat("Name someone.", schema=Ada, temperature=0, max_tokens=40)
    assert "Reply:" in str(e.value) and e.value.completion.finish_reason == "stop"


def test_parse_unit_cases():
    assert structured.parse('{"a": 1}', "json") == {"a": 1}
    assert structured.parse('{"a": 1}', None, "length") == {"a": 1}  # whole JSON, limit hit right after
    with pytest.raises(StructuredOutputError, match="cancelled"):
        structured.parse('{"a": ', "json", "cancelled")
    with pytest.raises(StructuredOutputError, match="cut off"):
        structured.parse("12", {"type": "integer"}, "length")  # may have been 123
    with pytest.raises(StructuredOutputError, match=r"\$\.servings"):
        structured.parse(json.dumps({"dish": "x", "difficulty": "easy", "servings": 99, "ingredients": ["a"],
                                     "chef": {"name": "c", "stars": 1}}), RECIPE)
    with pytest.raises(StructuredOutputError, match="expected a JSON object"):
        structured.parse("[1]", "json")


def test_schema_the_converter_refuses(loaded):
    with pytest.raises(ValueError, match=r"cannot be turned into a grammar: Unrecognized schema: \{'type': 'foo'\}"):
        structured.grammar({"type": "object", "properties": {"a": {"type": "foo"}}})
    with pytest.raises(ValueError, match="Pattern must start with"):
        lmnb.chat("x", schema={"type": "string", "pattern": "abc"})
    with pytest.raises(ValueError, match="remote \\$ref URLs are not fetched"):
        structured.grammar({"$ref": "https://example.com/person.json"})
    with pytest.raises(ValueError, match="is not a JSON Schema"):
        structured.json_schema({"title": "no shape"})
    with pytest.raises(TypeError, match="pass the class Person, not an instance"):
        lmnb.chat("x", schema=Person(name="a", age=1, role="doctor", skills=[], address={"city": "c", "country": "d"}))
    with pytest.raises(TypeError, match="'xml'"):
        structured.json_schema("xml")
    with pytest.raises(ValueError, match="either grammar= or schema="):
        lmnb.chat("x", schema="json", grammar='root ::= "a"')


@pytest.mark.parametrize("lo,hi", [(0, 0), (1, 12), (0, 120), (-15, 37), (95, 1005), (-1000, -3), (19, 91),
                                   (123, 1456), (95, None), (None, -3), (None, 5), (-5, None)])
def test_integer_ranges_are_in_the_grammar(lo, hi):
    """llama-cpp-python's converter ignores minimum/maximum; lmnb's rule admits exactly the range."""
    import re

    expr = gbnf._int_range(lo, hi)
    # the rule uses only literals, digit classes, groups, | and {m,n}: the same as a regex
    rx = re.compile(re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), expr).replace(" ", "") + r"\Z")
    for n in range(-1500, 1501):
        assert bool(rx.match(str(n))) == ((lo is None or n >= lo) and (hi is None or n <= hi)), (n, expr)
    assert not rx.match("007") and not rx.match("-0")
    assert "minimum" not in structured.grammar({"type": "integer", "minimum": 1, "maximum": 12})


def test_grammar_is_cached(monkeypatch):
    calls = []
    real = gbnf._json_schema_to_gbnf
    monkeypatch.setattr(gbnf, "_json_schema_to_gbnf", lambda s: calls.append(s) or real(s))
    gbnf._gbnf.cache_clear()
    first = structured.grammar(Person)
    assert structured.grammar(Person) == first
    assert structured.grammar(Person.model_json_schema()) == first  # the same JSON text
    assert len(calls) == 1
    structured.grammar(RECIPE)
    structured.grammar(dict(RECIPE))
    assert len(calls) == 2
    from llama_cpp.llama_grammar import JSON_GBNF

    assert structured.grammar("json") == structured.grammar(None) == structured.grammar(dict) == JSON_GBNF


def test_without_pydantic(loaded, monkeypatch):
    """The small fallback: plain dataclasses and TypedDicts of str/int/float/bool/list/Optional."""
    monkeypatch.setattr(structured, "_pydantic", lambda: None)
    schema = structured.json_schema(Novel)
    assert schema["required"] == ["title", "pages", "price", "in_print", "genres", "author"]
    assert schema["properties"]["author"]["properties"]["born"] == {"type": "integer"}
    assert schema["properties"]["sequel"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    text = ('{"title": "T", "pages": 3, "price": 2, "in_print": true, "genres": ["drama"], '
            '"author": {"name": "A", "born": 1900}}')
    novel = structured.parse(text, Novel)
    assert novel == Novel("T", 3, 2.0, True, ["drama"], Author("A", 1900))
    with pytest.raises(StructuredOutputError, match="author.born: expected int"):
        structured.parse(text.replace("1900", '"1900"'), Novel)
    with pytest.raises(TypeError, match="without pydantic"):
        structured.json_schema(set[int])
    assert isinstance(structured.parse(text, Novel), Novel)
    r = lmnb.chat("Describe an author as JSON.", schema=Author, temperature=0, max_tokens=MAX_TOKENS)
    assert isinstance(r.parsed, Author)


# ---- the magics ------------------------------------------------------------------------------------
def test_magic_json(shell):
    result, cap = run_cell(shell, "--json -t 0.8 --seed 3 -n 400 -o obj", "A JSON object describing a cat.")
    assert result.success, result.error_in_exec
    obj = shell.user_ns["obj"]
    assert isinstance(obj, dict)
    shown = final_reply(cap).data["text/plain"]
    assert shown.startswith("```json\n") and shown.rstrip().endswith("```")
    assert json.loads(shown.strip().removeprefix("```json").removesuffix("```")) == obj
    assert final_reply(cap).metadata["lmnb"]["kind"] == "chat"


def test_magic_schema_and_chat(shell):
    shell.user_ns["Person"] = Person
    result, _ = run_cell(shell, "--schema Person -o p -t 0.8 --seed 2 -n 128", "Invent a person.")
    assert result.success, result.error_in_exec
    assert isinstance(shell.user_ns["p"], Person)
    shell.user_ns["recipe_schema"] = RECIPE
    result, _ = run_cell(shell, "chat --name structured --schema recipe_schema -o r -t 0.8 --seed 1 -n 128",
                         "A recipe, please.")
    assert result.success, result.error_in_exec
    assert set(shell.user_ns["r"]) == set(RECIPE["required"])
    assert json.loads(lmnb.conversation("structured").messages[-1]["content"]) == shell.user_ns["r"]


def test_magic_cut_off_and_bad_schema(shell):
    shell.user_ns["Person"] = Person
    shell.user_ns.pop("cut", None)
    result, cap = run_cell(shell, "--schema Person -o cut -t 0 -n 5", "Invent a person.")
    err = result.error_in_exec
    assert isinstance(err, UsageError) and "cut off at max_tokens=5" in str(err)
    assert "cut" not in shell.user_ns
    assert "[stopped at max_tokens=5]" in final_reply(cap).data["text/plain"]  # the partial reply is shown
    result, _ = run_cell(shell, "--schema NoSuchThing", "x")
    assert isinstance(result.error_in_exec, UsageError) and "no variable 'NoSuchThing'" in str(result.error_in_exec)
    shell.user_ns["not_a_schema"] = 42
    result, _ = run_cell(shell, "--schema not_a_schema", "x")
    assert isinstance(result.error_in_exec, UsageError) and "is not a schema" in str(result.error_in_exec)
    result, _ = run_cell(shell, "--json --schema Person", "x")
    assert isinstance(result.error_in_exec, UsageError) and "not allowed with" in str(result.error_in_exec)


def test_patterns_with_shorthand_classes_become_grammars(loaded):
    """The converter copies \\d / \\w / \\s as literal text (llama.cpp then refuses the grammar)."""
    import re

    schema = {"type": "object", "properties": {"date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}},
              "required": ["date"]}  # fmt: skip
    r = lmnb.chat("When did the project start? It started on 3 March 2025.", schema=schema, temperature=0,
                  max_tokens=40)  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r.parsed["date"]), r.text
