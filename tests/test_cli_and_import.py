"""The `lmnb` command and the cost of `import lmnb` / `%load_ext lmnb`."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("llama_cpp", "huggingface_hub", "pandas", "numpy", "psutil", "jinja2")


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmnb", *args], capture_output=True, text=True, timeout=300, **kw)


def test_import_and_load_ext_stay_light():
    code = (
        "import sys, lmnb\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'lmnb')\n"
        "assert 'lm' in ip.magics_manager.magics['cell']\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"heavy modules imported eagerly: {out.stdout}"


def test_cli_chat_streams_an_answer(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    import os

    env = {**os.environ, **env}
    out = run("chat", "-t", "0", "-n", "12", "Say hello.", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "tok/s" in out.stderr


def test_cli_info_prints_metadata(smollm2_path):
    out = run("info", "smollm2")
    assert out.returncode == 0, out.stderr
    assert "llama" in out.stdout and "Q4_1" in out.stdout and "30 layers" in out.stdout
    js = json.loads(run("info", smollm2_path, "--json").stdout)
    assert js["quantization"] == "Q4_1" and js["context_length"] == 8192


def test_cli_errors_are_one_line(tmp_path):
    out = run("info", str(tmp_path / "missing.gguf"))
    assert out.returncode == 1
    assert "No such model file" in out.stderr and "Traceback" not in out.stderr


def test_no_public_function_is_shadowed_by_a_module_of_the_same_name():
    """Importing lmnb.X sets the attribute lmnb.X to the module: a function exported as lmnb.X would
    stop being callable after any code imported that module (it happened to lmnb.tokens after
    `%%lm --show-probs`)."""
    import importlib.util

    import lmnb

    clashes = [name for name in lmnb._EXPORTS if importlib.util.find_spec(f"lmnb.{name}") is not None]
    assert clashes == []
