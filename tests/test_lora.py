"""LoRA adapters on a loaded model (issue 19): added, rescaled and removed without reloading,
chosen per request, in the magics and through the server. All on the real SmolLM2, with adapters
built by the test (numpy + gguf, tests/lora_fixtures.py).

The model is loaded under its own name with ``batch_invariant`` (one KV stream per sequence), so
that "the same greedy reply" is exact whatever else runs beside it; the default model is left alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import final_reply, run_cell, server_root
from tests.lora_fixtures import make_gguf_lora, make_peft_folder

NAME = "lora-base"
PROMPT = "The capital of France is"
GREEDY = dict(temperature=0.0, max_tokens=16, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, smollm2_path):
    d = tmp_path_factory.mktemp("adapters")
    return {
        "a": make_gguf_lora(d / "a.gguf", smollm2_path, targets=("q_proj", "v_proj"), seed=1, scale_b=0.05),
        "b": make_gguf_lora(d / "b.gguf", smollm2_path, targets=("o_proj", "up_proj"), seed=2, scale_b=0.05),
        "zero": make_gguf_lora(d / "zero.gguf", smollm2_path, targets=("q_proj", "v_proj"), zero_b=True),
    }


@pytest.fixture(scope="module")
def base(engine, smollm2_path):
    """SmolLM2 loaded under its own name, with no adapters; unloaded after the module."""
    import lmnb

    lmnb.load(smollm2_path, name=NAME, n_ctx=2048, batch_invariant=True)
    yield lmnb.get_engine(NAME)
    lmnb.unload(NAME)


@pytest.fixture
def eng(base):
    yield base
    for a in base.loras():  # each test starts from the base alone
        base.remove_lora(a.name)


def reply(lora=None, prompt=PROMPT) -> str:
    import lmnb

    return lmnb.complete(prompt, model=NAME, lora=lora, **GREEDY).text


def logits(eng, lora=None) -> np.ndarray:
    return eng.next_token_logits([t for t, _, _ in eng.tokenize(PROMPT)], lora=lora)


def test_adapter_changes_the_model_and_scale_0_or_removing_it_gives_the_base_back(eng, adapters):
    import lmnb

    plain, plain_logits = reply(), logits(eng)
    rows = lmnb.lora(adapters["a"], model=NAME)
    assert rows == [{"id": 0, "name": "a", "path": adapters["a"], "scale": 1.0, "alpha": 8.0}]
    with_a = logits(eng)
    assert np.abs(with_a - plain_logits).max() > 0.5  # a nonzero adapter changes the logits
    changed = reply()
    assert changed != plain

    lmnb.lora("a", 0, model=NAME)  # rescaled, not reloaded: the same adapter, now off
    assert reply() == plain and np.array_equal(logits(eng), plain_logits)
    lmnb.lora("a", 1.0, model=NAME)
    assert reply() == changed
    lmnb.lora("a", remove=True, model=NAME)
    assert lmnb.lora(model=NAME) == []
    assert reply() == plain and np.array_equal(logits(eng), plain_logits)


def test_zero_adapter_gives_the_base_replies(eng, adapters):
    import lmnb

    plain, plain_logits = reply(), logits(eng)
    lmnb.lora(adapters["zero"], model=NAME)
    assert np.array_equal(logits(eng), plain_logits)
    assert reply() == plain


def test_each_request_gets_its_own_adapters_in_one_batch(eng, adapters):
    """Requests wanting different sets run at the same time; each reply is the one it gets alone."""
    import lmnb

    lmnb.lora(adapters["a"], model=NAME)
    lmnb.lora(adapters["b"], 0.5, model=NAME)
    choices = [[], "a", None, "b:1", {"a": 0.5, "b": 0.5}, "none"]
    alone = [reply(c) for c in choices]
    assert alone[0] == alone[5] and alone[2] == reply([("a", 1.0), ("b", 0.5)])
    assert len(set(alone)) >= 3  # the base and the adapters: different models
    switches = eng.stats["lora_switches"]
    reqs = [lmnb.complete(PROMPT, model=NAME, lora=c, stream=True, **GREEDY) for c in choices]
    assert [r.result().text for r in reqs] == alone
    assert eng.stats["lora_switches"] > switches  # the sets took turns


def test_logits_match_llama_cpp_python_with_the_same_adapter(eng, adapters, smollm2_path):
    """llama-cpp-python's own ``Llama(lora_path=...)`` on the same files and the same attention
    kernel (flash attention, lmnb's default): the same logits within 1e-4 (measured: identical).
    Without flash attention llama.cpp's own logits move by up to ~1 on this model, base or adapter."""
    import llama_cpp

    import lmnb

    lmnb.lora(adapters["a"], model=NAME)
    ours = logits(eng)
    theirs_llm = llama_cpp.Llama(smollm2_path, n_ctx=256, n_threads=2, lora_path=adapters["a"],
                                  flash_attn=True, verbose=False)  # fmt: skip
    try:
        toks = theirs_llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
        assert toks == [t for t, _, _ in eng.tokenize(PROMPT)]
        theirs_llm.eval(toks)
        theirs = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(theirs_llm.ctx, -1), shape=(len(ours),)).copy()
    finally:
        theirs_llm.close()
    assert int(ours.argmax()) == int(theirs.argmax())
    assert np.abs(ours - theirs).max() < 1e-4


def test_bad_adapters_get_clear_errors_and_leave_the_base_working(eng, adapters, tmp_path, smollm2_path):
    import lmnb

    plain = reply()
    not_lora = tmp_path / "notes.gguf"
    not_lora.write_text("not a GGUF file")
    with pytest.raises(lmnb.LoadError, match="could not load the LoRA adapter"):
        lmnb.lora(str(not_lora), model=NAME)
    with pytest.raises(lmnb.LoadError, match="could not load the LoRA adapter"):
        lmnb.lora(smollm2_path, model=NAME)  # a model, not an adapter
    with pytest.raises(lmnb.LoadError, match="no LoRA adapter at"):
        lmnb.lora(str(tmp_path / "missing.gguf"), model=NAME)
    with pytest.raises(ValueError, match="expected a number"):
        lmnb.lora(adapters["a"], "strong", model=NAME)
    with pytest.raises(ValueError, match="no LoRA adapter named 'nope'"):
        reply("nope")
    assert lmnb.lora(model=NAME) == []
    assert reply() == plain


def test_a_peft_folder_loads_directly_and_matches_its_gguf_twin(eng, adapters, tmp_path, smollm2_path):
    """What peft, Axolotl and Unsloth write: converted once (then cached), the same logits as the
    same weights written straight to GGUF; a broken folder is a clear error and the base stays."""
    import lmnb

    folder = make_peft_folder(tmp_path / "reports-lora", smollm2_path, targets=("q_proj", "k_proj", "v_proj",
                              "o_proj", "gate_proj", "up_proj", "down_proj"), seed=3)  # fmt: skip
    twin = make_gguf_lora(tmp_path / "twin.gguf", smollm2_path, targets=("q_proj", "k_proj", "v_proj", "o_proj",
                          "gate_proj", "up_proj", "down_proj"), seed=3)  # fmt: skip
    plain = logits(eng)
    rows = lmnb.lora(folder, model=NAME)
    assert rows[0]["name"] == "reports-lora" and rows[0]["path"] == folder
    from_peft = logits(eng)
    lmnb.lora("reports-lora", remove=True, model=NAME)
    lmnb.lora(twin, model=NAME)
    assert np.array_equal(logits(eng, lora="twin"), from_peft)
    assert np.abs(from_peft - plain).max() > 0.5
    lmnb.lora("twin", remove=True, model=NAME)

    (tmp_path / "reports-lora" / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8, "use_dora": true}')
    with pytest.raises(lmnb.LmnbError, match="DoRA"):
        lmnb.lora(folder, model=NAME)
    assert lmnb.lora(model=NAME) == [] and np.array_equal(logits(eng), plain)


def test_magics_add_scale_list_and_choose_adapters(eng, adapters, shell, capsys):
    import lmnb

    shell.run_line_magic("lm", f"lora add {adapters['a']}:0.5 -m {NAME}")
    shell.run_line_magic("lm", f"lora -m {NAME}")
    assert "[0] a  scale 0.5" in capsys.readouterr().out
    shell.run_line_magic("lm", f"lora scale a 1 -m {NAME}")
    assert eng.loras()[0].scale == 1.0

    def cell(flags: str) -> str:
        result, cap = run_cell(shell, f"--model {NAME} -t 0 -n 16 --repeat-penalty 1 {flags}", PROMPT)
        assert result.success
        return final_reply(cap).data["text/plain"]

    def chat(lora) -> str:
        return lmnb.chat(PROMPT, model=NAME, lora=lora, **GREEDY).text

    assert cell("--lora none").startswith(chat([]))
    assert cell("--lora a:0.5").startswith(chat("a:0.5"))
    assert chat([]) != chat("a:0.5")
    shell.run_line_magic("lm", f"lora remove a -m {NAME}")
    assert eng.loras() == []


def test_server_lora_field_and_adapter_routes(loaded, client, server, adapters):
    """llama-server's shapes: ``lora: [{id, scale}]`` per request, GET/POST /lora-adapters."""
    import httpx

    import lmnb

    def complete(**extra) -> str:
        out = client.completions.create(model="", prompt=PROMPT, max_tokens=8, temperature=0, extra_body=extra)
        return out.choices[0].text

    lmnb.lora(adapters["a"], 0.0)  # on the default model, off unless asked for
    try:
        root = server_root(server)
        assert httpx.get(f"{root}/lora-adapters").json() == [{"id": 0, "path": adapters["a"], "scale": 0.0}]
        assert complete(lora=[{"id": 0, "scale": 1.0}]) == lmnb.complete(PROMPT, lora="a:1", max_tokens=8,
                                                                             temperature=0).text  # fmt: skip
        r = httpx.post(f"{root}/v1/completions", json={"prompt": PROMPT, "lora": [{"id": 3, "scale": 1}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "lora"
        assert httpx.post(f"{root}/lora-adapters", json=[{"id": 0, "scale": 0.25}]).json()[0]["scale"] == 0.25
        assert lmnb.lora()[0]["scale"] == 0.25
        assert httpx.post(f"{root}/lora-adapters", json=[]).json()[0]["scale"] == 0.0  # unlisted: off
        assert httpx.post(f"{root}/lora-adapters", json=[{"id": 0, "scale": "x"}]).status_code == 400
    finally:
        lmnb.lora("a", remove=True)


def test_compare_side_by_side_and_the_history_row_records_the_adapters(eng, adapters, tmp_path):
    import lmnb

    lmnb.lora(adapters["a"], 0.0, model=NAME)  # loaded but off: compare turns it on per column
    cmp = lmnb.compare(PROMPT, adapters=[None, "a", ("a", 0.5)], models=[NAME], settings=[GREEDY], max_tokens=16)
    assert [r.settings["lora"] for r in cmp.runs] == ["none", "a:1", "a:0.5"]
    assert [r.completion.lora for r in cmp.runs] == [{}, {"a": 1.0}, {"a": 0.5}]
    texts = [r.text for r in cmp.runs]
    assert texts == [lmnb.chat(PROMPT, model=NAME, lora=c, **GREEDY).text for c in ([], "a:1", "a:0.5")]
    assert texts[0] != texts[1]
    assert "a:0.5" in cmp._repr_html_() and "LoRA a×0.5" in cmp.runs[2].completion.stats_line()

    done = lmnb.chat(PROMPT, model=NAME, lora="a:0.25", **GREEDY)
    rows = lmnb.history(last=5)  # flushes the writer: the row was queued before chat returned
    hit = rows[rows["request_id"] == done.request_id]
    assert len(hit) == 1 and hit.iloc[0]["params"]["lora"] == {"a": 0.25}


def test_models_pane_and_lab_status_list_the_adapters_as_they_change(eng, adapters):
    """The Models pane's Loaded rows and the lab side panel's status follow ``lmnb.lora`` calls."""
    import lmnb
    from lmnb.notebook.labcomm import loaded_models
    from lmnb.widgets import Models

    def row() -> str:
        rows = {name: str(r.children[1].value) for name, r in zip(w.loaded.unload_buttons, w.loaded.rows.children)}
        return rows[NAME]

    w = Models()
    try:
        assert "LoRA" not in row()
        lmnb.lora(adapters["a"], 0.5, model=NAME)
        assert "LoRA a ×0.5" in row()
        assert {"name": "a", "scale": 0.5} in next(m for m in loaded_models() if m["name"] == NAME)["lora"]
        lmnb.lora("a", 2, model=NAME)
        assert "LoRA a ×2" in row()
        lmnb.lora("a", remove=True, model=NAME)
        assert "LoRA" not in row()
        assert next(m for m in loaded_models() if m["name"] == NAME)["lora"] == []
    finally:
        w.close()


def test_an_adapter_repo_on_the_hub_loads_like_a_model(eng, adapters, tmp_path, smollm2_path, monkeypatch):
    """A PEFT adapter repo, fetched through the hub (the local HF mirror) into the HF cache."""
    import os

    from huggingface_hub import constants

    import lmnb
    from tests.hf_server import HFServer, Repo

    folder = make_peft_folder(tmp_path / "peft", smollm2_path, seed=4)
    files = {name: os.path.join(folder, name) for name in os.listdir(folder)}
    files["README.md"] = b"# a LoRA for SmolLM2\n"
    with HFServer(repos={"someone/reports-lora": Repo(files=files)}) as hf:
        monkeypatch.setenv("HF_ENDPOINT", hf.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        rows = lmnb.lora("someone/reports-lora", model=NAME)
        with pytest.raises(lmnb.HubError, match="No repository someone/missing"):
            lmnb.lora("someone/missing", model=NAME)
    assert rows == [{"id": 0, "name": "reports-lora", "path": "someone/reports-lora", "scale": 1.0, "alpha": 8.0}]
    fetched = {os.path.basename(p) for p in (tmp_path / "hub").rglob("*") if p.is_file() or p.is_symlink()}
    assert "README.md" not in fetched and "adapter_config.json" in fetched
    twin = make_gguf_lora(tmp_path / "twin.gguf", smollm2_path, seed=4)
    assert np.abs(logits(eng) - logits(eng, lora=[])).max() > 0.5  # applied by default, at scale 1
    lmnb.lora(twin, model=NAME)
    assert np.array_equal(logits(eng, lora="reports-lora"), logits(eng, lora="twin"))
