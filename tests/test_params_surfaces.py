"""Every declared parameter (lmnb.params) reaches every surface, with the same range everywhere."""

from __future__ import annotations

import argparse
import math

import pytest

from lmnb.params import INF, LOAD, SAMPLING, Param


def _inside(p: Param) -> list:
    """Values the declared range accepts (the ends, a middle, the special ones)."""
    if p.type is bool:
        return [True, False]
    if p.choices:
        return list(p.choices)
    if p.type not in (int, float):
        return []
    lo = p.lo if p.lo != -INF else -1e6
    hi = p.hi if p.hi != INF else lo + 1000
    values = [hi, (lo + hi) / 2, *p.special]
    if not p.lo_open:
        values.append(lo)
    return [p.type(v) if p.type is int else v for v in values]


def _outside(p: Param) -> list:
    if p.choices:
        return ["no_such_policy"]
    if p.type not in (int, float):
        return []
    out = []
    if p.lo != -INF:
        below = p.lo if p.lo_open else p.lo - 1
        if below not in p.special:
            out.append(p.type(below) if p.type is int else below)
    if p.hi != INF:
        out.append(p.type(p.hi + 1) if p.type is int else p.hi + 0.5)
    return out


def _flag_parser(add) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add(p)
    return p


@pytest.mark.parametrize("p", SAMPLING + LOAD, ids=lambda p: p.name)
def test_config_trait_has_the_declared_default_help_and_range(p):
    from traitlets import TraitError

    from lmnb.config import LM

    cfg = LM()  # a fresh object, not the session's
    trait = LM.class_traits()[p.name]
    assert trait.help == p.help and trait.metadata.get("config")
    assert getattr(cfg, p.name) == p.default
    for v in _inside(p):
        setattr(cfg, p.name, v)
    for v in _outside(p):
        with pytest.raises(TraitError, match=p.name):
            setattr(cfg, p.name, v)


@pytest.mark.parametrize("p", SAMPLING, ids=lambda p: p.name)
def test_sampling_params_validate_with_the_same_range(p):
    from lmnb.types import SamplingParams

    for v in _inside(p):
        SamplingParams(**{p.name: v}).validate()
    for v in _outside(p):
        with pytest.raises(ValueError, match=f"{p.name}=.*must be {p.range_text}".replace("[", r"\[").replace("(", r"\(")):
            SamplingParams(**{p.name: v}).validate()


@pytest.mark.parametrize("surface", ["magic", "magic chat", "magic map", "cli chat"])
@pytest.mark.parametrize("p", SAMPLING, ids=lambda p: p.name)
def test_every_sampling_parameter_has_a_flag_with_the_same_range(p, surface):
    from lmnb.cli import build_parser
    from lmnb.notebook.magic_parsers import cell_parser
    from lmnb.options import sampling_from_args

    if surface.startswith("magic"):
        parser = cell_parser(surface[6:])
        prefix = ["--over", "x"] if surface == "magic map" else []
    else:
        parser, prefix = build_parser(), ["chat", "hi"]
    flag = p.cli_flags[-1]
    for v in _inside(p):
        args = parser.parse_args(prefix + [f"{flag}={v}"])
        got = sampling_from_args(args)[p.name]
        assert got == v if isinstance(v, str) else math.isclose(got, v)
    for v in _outside(p):
        with pytest.raises((SystemExit, Exception)):
            parser.parse_args(prefix + [f"{flag}={v}"])
    if p.name == "stop":
        args = parser.parse_args(prefix + ["--stop", "a", "--stop", "b"])
        assert sampling_from_args(args)["stop"] == ["a", "b"]
    if p.name == "logit_bias":
        args = parser.parse_args(prefix + ["--logit-bias", "5=-100", "--logit-bias", '{"7": 3}'])
        assert sampling_from_args(args)["logit_bias"] == {5: -100.0, 7: 3.0}


@pytest.mark.parametrize("p", LOAD, ids=lambda p: p.name)
def test_every_load_parameter_has_a_flag_in_the_magic_and_the_cli(p):
    from lmnb.cli import build_parser
    from lmnb.notebook.magic_parsers import parser
    from lmnb.options import load_from_args

    for argv_prefix, prs in ((["serve"], build_parser()), (["chat", "hi"], build_parser()), ([], parser("load"))):
        if p.type is bool:
            args = prs.parse_args(argv_prefix + [p.cli_flags[0].replace("--", "--no-", 1)])
            assert load_from_args(args)[p.name] is False
            continue
        value = "7" if p.type is not str else "x"
        args = prs.parse_args(argv_prefix + [p.cli_flags[0], value])
        assert str(load_from_args(args)[p.name]) == value


def test_the_parameters_pane_draws_every_parameter_within_its_range():
    from lmnb.widgets.parameters import LOAD_CONTROLS, SAMPLING_CONTROLS, Parameters

    drawn = set(SAMPLING_CONTROLS) | set(LOAD_CONTROLS)
    # every parameter with a drawing is drawn; stop strings and logit_bias are typed in code
    assert drawn == {p.name for p in SAMPLING + LOAD if p.widget}
    assert {p.name for p in SAMPLING if not p.widget} == {"stop", "logit_bias"}
    pane = Parameters()
    try:
        for name, control in pane.controls.items():
            p = next(q for q in SAMPLING + LOAD if q.name == name)
            assert control.tooltip == p.help
            if hasattr(control, "min"):
                assert control.min >= p.lo or control.min in p.special, name
                assert control.max <= p.hi, name
            if hasattr(control, "options"):
                assert all(o in p.choices if p.choices else p.lo <= o <= p.hi for o in control.options)
    finally:
        pane.close()


def test_presets_set_every_style_parameter_and_check_the_same_ranges():
    from lmnb import presets
    from lmnb.params import style_names

    for name, values in presets.BUILTIN.items():
        assert set(values) == set(style_names()), name
    for p in SAMPLING:
        for v in _outside(p):
            with pytest.raises(ValueError, match=p.name):
                presets.save("bad", {p.name: v})


def test_the_remote_backend_sends_openai_fields_and_only_the_extensions_set():
    from lmnb.engine.engine import resolve_sampling
    from lmnb.remote import request_fields
    from lmnb.types import SamplingParams

    explicit = SamplingParams(dry_multiplier=0.8, logit_bias={5: -100})
    sent = request_fields(resolve_sampling(explicit), explicit)
    openai_names = {p.openai for p in SAMPLING if p.openai} - {"stop", "logit_bias"}
    assert openai_names <= set(sent)
    assert sent["dry_multiplier"] == 0.8 and sent["logit_bias"] == {"5": -100.0}
    assert "top_k" not in sent and "mirostat" not in sent  # extensions the caller did not set


@pytest.mark.parametrize("p", [q for q in SAMPLING if q.name != "stop"], ids=lambda p: p.name)
def test_the_server_schema_accepts_every_sampling_parameter_with_the_same_range(p):
    from pydantic import ValidationError

    from lmnb.server import schemas as S

    field = p.openai or p.name
    base = {"messages": [{"role": "user", "content": "hi"}]}
    assert field in S.ChatCompletionRequest.model_fields and field in S.CompletionRequest.model_fields
    for v in _inside(p):
        S.ChatCompletionRequest.model_validate({**base, field: v})
    for v in _outside(p):
        with pytest.raises(ValidationError):
            S.ChatCompletionRequest.model_validate({**base, field: v})
    if p.type is dict:
        with pytest.raises(ValidationError, match="-100, 100"):
            S.ChatCompletionRequest.model_validate({**base, field: {"5": 500}})


def test_logit_bias_through_the_server_bans_and_forces_tokens(loaded):
    import openai

    import lmnb

    srv = lmnb.serve(port=0)
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)
        ask = dict(model="", messages=[{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=4)
        first = client.chat.completions.create(**ask).choices[0].message.content
        first_id = lmnb.get_engine().tokenize(first, special=False)[0][0]
        banned = client.chat.completions.create(**ask, logit_bias={str(first_id): -100}).choices[0].message.content
        assert first_id not in [t for t, _, _ in lmnb.get_engine().tokenize(banned, special=False)]
        forced_id = lmnb.get_engine().tokenize(" banana", special=False)[0][0]
        forced = client.chat.completions.create(**ask, logit_bias={str(forced_id): 100}).choices[0].message.content
        assert forced.split() == ["banana"] * len(forced.split()) and forced
        with pytest.raises(openai.BadRequestError, match="logit_bias"):
            client.chat.completions.create(**ask, logit_bias={"5": 500})
        with pytest.raises(openai.BadRequestError, match="out of range"):
            client.chat.completions.create(**ask, logit_bias={str(10**9): -100})
    finally:
        srv.stop()
