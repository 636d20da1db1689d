"""Several models loaded at once: each on its own worker, chosen per request, unloaded by name."""

from __future__ import annotations

import threading

import pytest

import lmnb
from lmnb import api
from lmnb.errors import LoadError, NoModelLoaded

from .waiting import wait_for

GREEDY = {"temperature": 0, "max_tokens": 12, "seed": 1}


@pytest.fixture
def gemma_path():
    from lmnb.sources.library import bundled_model

    try:
        return bundled_model("gemma3")
    except Exception as e:  # the dev extra installs it; say so rather than skip silently in CI
        pytest.fail(f"Gemma 3 is needed for the several-models tests: {e}")


@pytest.fixture
def two_models(loaded, gemma_path):
    """SmolLM2 as the default model and Gemma 3 beside it, as 'g'."""
    lmnb.load(gemma_path, name="g", n_ctx=1024)
    yield
    lmnb.unload("g")


def test_two_models_answer_interleaved_requests_each_with_its_own_model(two_models):
    question = "Name a colour."
    alone = {m: lmnb.chat(question, model=m, **GREEDY).text for m in (None, "g")}
    assert alone[None] != alone["g"], "the two models should not answer identically"

    results: dict[tuple, str] = {}
    names = {m: lmnb.get_engine(m).info.name for m in (None, "g")}
    served: dict[tuple, str] = {}

    def ask(model, i):
        reply = lmnb.chat(question, model=model, **GREEDY)
        results[(model, i)], served[(model, i)] = reply.text, reply.model

    threads = [threading.Thread(target=ask, args=(m, i)) for i in range(3) for m in (None, "g")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 6
    for (model, i), text in results.items():
        # its own model's reply (decoded beside the model's other requests in one shared cache, a
        # greedy reply is not always word for word the one alone; see the README)
        assert served[(model, i)] == names[model] and text, (text, alone)
    # each reply names the model that produced it
    assert lmnb.chat(question, model="g", **GREEDY).model != lmnb.chat(question, **GREEDY).model


def test_models_are_found_by_name_model_name_or_file_and_listed_with_memory(two_models, gemma_path):
    import os

    info = lmnb.get_engine("g").info
    for alias in ("g", info.name, os.path.basename(gemma_path), gemma_path):
        assert lmnb.get_engine(alias) is lmnb.get_engine("g")
    st = lmnb.status()
    assert [m.name for m in st.models] == ["default", "g"]
    assert all(m.model_bytes > 0 for m in st.models)
    with pytest.raises(NoModelLoaded, match="No loaded model is called 'nope'"):
        lmnb.chat("hi", model="nope")


def test_loading_without_a_name_replaces_only_the_default(two_models, smollm2_path, gemma_path):
    lmnb.load(gemma_path, n_ctx=1024)  # the default is now Gemma; 'g' stays
    try:
        assert [m.name for m in lmnb.loaded()] == ["default", "g"]
        assert api.current_model().path == gemma_path
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


def test_magics_load_as_unload_by_name_status_and_model_flag(shell, gemma_path, capsys):
    from .conftest import run_cell

    shell.run_line_magic("lm", f"load {gemma_path} --as second --ctx 1024")
    try:
        shell.run_line_magic("lm", "status")
        out = capsys.readouterr().out
        assert "[default]" in out and "[second]" in out and "2 model(s)" in out
        run_cell(shell, "--model second -t 0 -n 8 -o reply", "Say hello.")
        row = lmnb.history(last=1).iloc[-1]
        assert row["model_path"] == gemma_path  # the row names the model that answered
        assert shell.user_ns["reply"] == lmnb.chat("Say hello.", model="second", temperature=0, max_tokens=8).text
    finally:
        shell.run_line_magic("lm", "unload second")
    assert "Unloaded 'second'" in capsys.readouterr().out
    assert [m.name for m in lmnb.loaded()] == ["default"]


def test_map_and_compare_choose_models(two_models):
    out = lmnb.map("Repeat: {item}", ["a", "b"], model="g", progress=False, **GREEDY)
    assert list(out) == [lmnb.chat("Repeat: a", model="g", **GREEDY).text,
                         lmnb.chat("Repeat: b", model="g", **GREEDY).text]
    cmp = lmnb.compare("Name a fruit.", [dict(GREEDY)], models=[None, "g"], max_tokens=12)
    assert {r.model for r in cmp.runs} == {lmnb.get_engine().info.name, lmnb.get_engine("g").info.name}
    assert [m.name for m in lmnb.loaded()] == ["default", "g"]  # compare unloaded nothing it did not load


def test_compare_loads_a_model_that_fits_and_unloads_it_after(loaded, gemma_path):
    cmp = lmnb.compare("Name a fruit.", [dict(GREEDY)], models=[None, gemma_path], max_tokens=12)
    assert len(cmp.runs) == 2 and cmp.runs[1].model == "gemma-3-270m-q4_k_m"  # named by its file
    assert [m.name for m in lmnb.loaded()] == ["default"]


def test_a_model_that_does_not_fit_is_refused_with_the_reason(loaded, gemma_path, monkeypatch):
    from lmnb.sources import fit

    small = fit.Hardware(ram_total=8 * 2**30, ram_available=50 * 2**20)  # 50 MiB free
    monkeypatch.setattr(fit, "probe", lambda: small)
    with pytest.raises(LoadError, match="will not fit in the memory free now"):
        lmnb.compare("Hi", models=[None, gemma_path])
    assert [m.name for m in lmnb.loaded()] == ["default"]


def test_models_loaded_on_demand_are_unloaded_after_the_idle_time(loaded, gemma_path):
    from lmnb.types import LoadOptions

    cfg = lmnb.configure(idle_unload=0.5)
    try:
        api.registry().load(gemma_path, LoadOptions(n_ctx=512), name="jit", on_demand=True)
        lmnb.chat("Hi", model="jit", max_tokens=2)
        assert wait_for(lambda: "jit" not in api.registry().names()), "the idle model was not unloaded"
        assert [m.name for m in lmnb.loaded()] == ["default"]  # the default model is never unloaded for idling
    finally:
        cfg.idle_unload = 0
        lmnb.unload("jit")


def test_one_conversation_appended_from_many_threads_loses_and_duplicates_nothing(loaded, smollm2_path, shell):
    """The chat pane, `%%lm chat` cells, API callers and server clients add turns to one conversation at once.

    60 turns (12 from each of five writers), each answered by the model: every question is in the
    conversation exactly once, followed by its own reply."""
    import openai

    from lmnb.widgets import Chat

    lmnb.load(smollm2_path, n_ctx=8192)  # 60 turns of history (the next test's fixture reloads 2048)
    name = "stress"
    lmnb.reset(name)
    pane = Chat(name, max_tokens=1, temperature=0)
    srv = lmnb.serve(port=0)
    client = openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)
    per_writer = 12
    errors: list[BaseException] = []

    def writer(fn):
        def run() -> None:
            try:
                for i in range(per_writer):
                    fn(i)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
        return threading.Thread(target=run)

    def api_call(k):
        return lambda i: lmnb.chat(f"api {k}-{i}", conversation=name, max_tokens=1, temperature=0)

    def pane_ask(i):
        pane.ask(f"pane {i}")
        assert pane.wait(120)

    def cell(i):
        shell.run_cell_magic("lm", f"chat --name {name} --max-tokens 1 --temperature 0", f"cell {i}")

    def server_call(i):
        client.chat.completions.create(model="", messages=[{"role": "user", "content": f"server {i}"}],
                                       max_tokens=1, temperature=0, extra_body={"conversation": name})

    threads = [writer(api_call(0)), writer(api_call(1)), writer(pane_ask), writer(cell), writer(server_call)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
    finally:
        pane.close()
        srv.stop()
    assert not errors, errors
    msgs = lmnb.conversation(name).messages
    users = [m["content"] for m in msgs if m["role"] == "user"]
    expected = {f"api {k}-{i}" for k in range(2) for i in range(per_writer)}
    expected |= {f"{w} {i}" for w in ("pane", "cell", "server") for i in range(per_writer)}
    assert len(users) == len(expected) == 5 * per_writer and set(users) == expected
    # every question is followed by its own reply
    assert all(msgs[i]["role"] == "user" and msgs[i + 1]["role"] == "assistant" for i in range(0, len(msgs), 2))
    lmnb.reset(name)


def test_the_server_continues_a_named_conversation(loaded):
    """`conversation` (lmnb's extension) reads the session's conversation and appends the turn."""
    import openai

    lmnb.reset("shared")
    lmnb.chat("My name is Ada.", conversation="shared", max_tokens=8, temperature=0)
    srv = lmnb.serve(port=0)
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)
        r = client.chat.completions.create(model="", messages=[{"role": "user", "content": "What is my name?"}],
                                           max_tokens=8, temperature=0, extra_body={"conversation": "shared"})
        msgs = lmnb.conversation("shared").messages
        assert [m["content"] for m in msgs if m["role"] == "user"] == ["My name is Ada.", "What is my name?"]
        assert msgs[-1]["content"] == r.choices[0].message.content
        assert r.usage.prompt_tokens > 20  # the earlier turn was in the prompt
        with pytest.raises(openai.BadRequestError, match="last message must be the user"):
            client.chat.completions.create(model="", messages=[{"role": "assistant", "content": "x"}],
                                           extra_body={"conversation": "shared"})
        assert len(lmnb.conversation("shared").messages) == 4  # the refused request appended nothing
    finally:
        srv.stop()
        lmnb.reset("shared")


# ---- the server ----------------------------------------------------------------------------
@pytest.fixture
def server(loaded):
    srv = lmnb.serve(port=0)
    yield srv
    srv.stop()


def _client(srv):
    import openai

    return openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)


def test_server_and_notebook_threads_interleave_requests_to_two_models(two_models, server):
    client = _client(server)
    question = "Name a colour."
    alone = {m: lmnb.chat(question, model=m, **GREEDY).text for m in ("default", "g")}
    listed = [m.id for m in client.models.list().data]
    default_id = lmnb.get_engine().info.name
    assert listed[:2] == [default_id, "g"]  # the loaded models first
    got: list[tuple[str, str, str]] = []

    def from_server(model_id: str, key: str) -> None:
        r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": question}],
                                           temperature=0, max_tokens=12, seed=1)
        got.append((key, r.choices[0].message.content, r.model))

    def from_notebook(key: str) -> None:
        got.append((key, lmnb.chat(question, model=key, **GREEDY).text, ""))

    threads = [threading.Thread(target=from_server, args=(default_id, "default")),
               threading.Thread(target=from_server, args=("g", "g")),
               threading.Thread(target=from_notebook, args=("default",)),
               threading.Thread(target=from_notebook, args=("g",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(got) == 4
    for key, text, model in got:
        assert text == alone[key], key
        if model:
            assert model == lmnb.get_engine(key).info.name
    rows = lmnb.history(last=8)
    assert set(rows[rows["kind"] == "server"]["model_path"]) == {lmnb.get_engine("default").info.path,
                                                               lmnb.get_engine("g").info.path}


def test_a_request_naming_a_local_model_loads_it_on_demand(server, gemma_path):
    import openai

    cfg = lmnb.configure(jit_load=True)
    try:
        r = _client(server).chat.completions.create(
            model=gemma_path, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert r.model == "gemma-3-270m-q4_k_m"
        assert [m.on_demand for m in lmnb.loaded()] == [False, True]
        cfg.jit_load = False
        with pytest.raises(openai.NotFoundError):  # strict: an unknown name is a 404, not the default model
            lmnb.configure(strict_model_names=True)
            _client(server).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=3)
    finally:
        cfg.jit_load = False
        cfg.strict_model_names = False
        lmnb.unload(gemma_path)
    assert [m.name for m in lmnb.loaded()] == ["default"]


def test_an_unknown_model_name_goes_to_the_default_model(server):
    r = _client(server).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=3)
    assert r.model == lmnb.get_engine().info.name  # the reply says which model answered


def test_a_model_that_does_not_fit_is_refused_by_the_server(server, gemma_path, monkeypatch):
    import openai

    from lmnb.sources import fit

    monkeypatch.setattr(fit, "probe", lambda: fit.Hardware(ram_total=8 * 2**30, ram_available=50 * 2**20))
    cfg = lmnb.configure(jit_load=True)
    try:
        with pytest.raises(openai.APIStatusError) as err:
            _client(server).chat.completions.create(model=gemma_path, messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=3)
        assert err.value.status_code == 503 and "will not fit in the memory free now" in str(err.value)
    finally:
        cfg.jit_load = False
    assert [m.name for m in lmnb.loaded()] == ["default"]


def test_a_model_file_without_a_chat_template_is_named_at_load(shell, gemma_path, smollm2_path, capsys):
    # the bundled Gemma 3 270M is the base model: no template, so chats go out in ChatML
    note = "This file has no chat template: chats are written in ChatML"
    try:
        for path, extra, shown in ((gemma_path, "", True), (gemma_path, "--chat-template '{{ messages[0].content }}'", False),
                                   (smollm2_path, "", False)):  # fmt: skip
            shell.run_line_magic("lm", f"load {path} --as probe --ctx 512 {extra}")
            out = capsys.readouterr().out
            assert "Loaded " in out and (note in out) == shown, out
    finally:
        lmnb.unload("probe")
