"""The magics, run through a real IPython InteractiveShell on the real model."""

from __future__ import annotations

import os
import signal
import threading

from IPython.utils.capture import capture_output

import lmnb

from .conftest import final_reply, run_cell
from .waiting import wait_for


def last_history_row():
    rows = lmnb.history(last=1)
    return rows.iloc[-1].to_dict()


def test_usage_is_available(shell):
    doc = shell.find_line_magic("lm").__doc__
    for verb in ("load", "unload", "status", "models", "set", "log", "reset", "history", "%%lm chat"):
        assert verb in doc


def test_one_shot_cell_streams_markdown_and_stats(shell):
    result, cap = run_cell(shell, "-t 0 -n 20", "Say hello in French.")
    assert result.success
    reply = lmnb.history(last=1).iloc[-1]
    outputs = cap.outputs
    assert len(outputs) >= 3, "a placeholder updated with the reply, then a stats line"
    shown = final_reply(cap)
    assert shown.data["text/plain"].startswith(reply["output"])
    assert "[stopped at max_tokens=20]" in shown.data["text/plain"]
    meta = shown.metadata["lmnb"]
    assert meta["model_path"].endswith(".gguf") and len(meta["model_sha256"]) == 64
    assert meta["params"]["temperature"] == 0.0 and meta["params"]["max_tokens"] == 20
    assert meta["seed"] == meta["params"]["seed"]
    assert "tok/s" in outputs[-1].data["text/plain"] and "first token" in outputs[-1].data["text/plain"]


def test_output_variable(shell):
    result, _ = run_cell(shell, "-t 0 -n 12 -o answer", "What is the capital of France?")
    assert result.success
    assert shell.user_ns["answer"] == last_history_row()["output"]
    assert shell.user_ns["answer"]


def test_interpolation_with_variables_and_dict_literals(shell):
    shell.user_ns["city"] = "Lisbon"
    cell = 'Describe {city} in one line. Format: {"name": "...", "country": "..."} and {{city}} {undefined_name}'
    result, _ = run_cell(shell, "-t 0 -n 8", cell)
    assert result.success
    sent = last_history_row()["messages"]
    assert "Describe Lisbon in one line." in sent
    assert '{\\"name\\": \\"...\\", \\"country\\": \\"...\\"}' in sent  # JSON-encoded in the DB row
    assert "{city}" in sent and "{undefined_name}" in sent


def test_chat_continues_a_named_conversation(shell):
    shell.run_line_magic("lm", "reset --name tutor")
    r1, _ = run_cell(shell, "chat --name tutor -s 'You are terse.' -t 0 -n 16", "My favourite number is 7.")
    r2, _ = run_cell(shell, "chat --name tutor -t 0 -n 16", "What is my favourite number?")
    assert r1.success and r2.success
    conv = lmnb.conversation("tutor")
    assert conv.system == "You are terse."
    assert len(conv.messages) == 4 and conv.messages[2]["content"] == "What is my favourite number?"
    row = last_history_row()
    assert row["conversation"] == "tutor" and "My favourite number is 7." in row["messages"]
    shell.run_line_magic("lm", "reset --name tutor")
    assert lmnb.conversation("tutor").messages == []


def test_same_seed_same_output_through_the_magic(shell):
    outs = []
    for _ in range(2):
        run_cell(shell, "-t 1.0 --seed 42 -n 24 -o out", "Invent a word.")
        outs.append(shell.user_ns["out"])
    assert outs[0] == outs[1]
    assert last_history_row()["seed"] == 42


def test_history_rows_record_everything(shell):
    before = len(lmnb.history())
    run_cell(shell, "-t 0.3 --top-k 20 --seed 7 -n 10", "Count to three.")
    rows = lmnb.history()
    assert len(rows) == before + 1
    row = rows.iloc[-1]
    assert row["model_path"].endswith(".gguf") and len(row["model_sha256"]) == 64
    assert row["params"]["top_k"] == 20 and row["params"]["temperature"] == 0.3 and row["seed"] == 7
    assert row["completion_tokens"] > 0 and row["generation_tokens_per_s"] > 0 and row["ttft_s"] > 0
    assert "Count to three." in row["messages"] and row["output"]


def test_config_magic_is_respected(shell, smollm2_path):
    cfg = lmnb.get_config()
    old = cfg.max_tokens, cfg.n_ctx
    try:
        shell.run_line_magic("config", "LM.max_tokens = 5")
        shell.run_line_magic("config", "LM.n_ctx = 1024")
        with capture_output():
            shell.run_line_magic("lm", f"load {smollm2_path}")
        assert lmnb.status().options.n_ctx == 1024
        run_cell(shell, "-t 0", "Tell me about the moon.")
        row = last_history_row()
        assert row["completion_tokens"] == 5 and row["finish_reason"] == "length"
    finally:
        cfg.max_tokens, cfg.n_ctx = old


def test_set_changes_session_defaults(shell):
    cfg = lmnb.get_config()
    old = cfg.temperature, cfg.top_p
    try:
        with capture_output():
            shell.run_line_magic("lm", "set temperature=0.2 top_p=0.9")
        assert (cfg.temperature, cfg.top_p) == (0.2, 0.9)
        run_cell(shell, "-n 4", "Hi")
        p = last_history_row()["params"]
        assert p["temperature"] == 0.2 and p["top_p"] == 0.9
        res = shell.run_cell("%lm set temperature=hot")
        assert not res.success
    finally:
        cfg.temperature, cfg.top_p = old


def test_line_commands(shell, smollm2_path):
    with capture_output() as cap:
        shell.run_line_magic("lm", "status")
        shell.run_line_magic("lm", "models")
        shell.run_line_magic("lm", "log -n 5")
        shell.run_line_magic("lm", "history -n 2")
        shell.run_line_magic("lm", f"info {smollm2_path}")
    out = cap.stdout
    assert "Model:" in out and "tok/s" in out
    shown = "".join(o.data.get("text/plain", "") for o in cap.outputs)  # %lm models displays a table
    assert "smollm2" in shown and "bundled" in shown and "on disk" in shown
    assert "Q4_1" in out


def test_bad_input_gives_a_clear_error_and_the_shell_keeps_working(shell, tmp_path, smollm2_path):
    bad = tmp_path / "fake.gguf"
    bad.write_text("not a model")
    with capture_output() as cap:
        r = shell.run_cell(f"%lm load {bad}")
    assert not r.success and "not a GGUF model file" in cap.stderr + cap.stdout + str(r.error_in_exec)
    r = shell.run_cell("%lm frobnicate")
    assert not r.success
    r = shell.run_cell("%%lm --temperature\nhi")
    assert not r.success
    r, _ = run_cell(shell, "-t 0 -n 4", "Still there?")
    assert r.success


def test_kernel_interrupt_keeps_partial_text(shell):
    """SIGINT during %%lm (what "Interrupt kernel" sends) stops promptly and keeps the text."""
    main = threading.main_thread()
    assert threading.current_thread() is main

    engine = lmnb.get_engine()
    start = engine.tokens_generated
    sent: list[float] = []

    def interrupt() -> None:  # once the reply is well under way, whatever the machine's speed
        wait_for(lambda: engine.tokens_generated >= start + 12, timeout=120)
        sent.append(engine.tokens_generated - start)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with capture_output() as cap:
        r = shell.run_cell("%%lm -t 0 -n 3000 -o partial\nWrite a very long essay about the history of Rome.")
    assert isinstance(r.error_in_exec, KeyboardInterrupt)
    # it stops right after the interrupt: within a decode step or two, however slow the machine
    assert lmnb.history(last=1).iloc[-1]["completion_tokens"] <= sent[0] + 2
    partial = shell.user_ns["partial"]
    assert len(partial) > 20
    shown = final_reply(cap).data["text/plain"]
    assert partial in shown and "[interrupted]" in shown
    row = last_history_row()
    assert row["finish_reason"] == "cancelled" and row["output"] == partial
    r, _ = run_cell(shell, "-t 0 -n 4", "Are you there?")
    assert r.success
