"""Browser-test harness: a real JupyterLab server, driven in Debian's headless Chromium by Playwright.

    server = LabServer(tmp / "lab"); server.start()
    browser = Browser(tmp / "chromium"); browser.start()
    page, log = browser.new_page()
    nb = Notebook.create(server, page, ["%load_ext lmnb", "%lm load"], log=log)
    nb.run_cell(0); nb.run_cell(1, timeout=120); nb.output_text(1)
    nb.screenshot("loaded")
    nb.close(); browser.close(); server.stop()

Everything the server and its kernels write (Jupyter config/data/runtime dirs, IPython profile, lmnb's
history and presets through the XDG dirs, the HF cache) lives in the server's temp dir. The kernel is
this interpreter (a kernelspec written into the temp data dir, which shadows the installed ones).

Playwright and Chromium are imported/started lazily so that test collection works without them
(the fixtures skip, or fail on CI, with a readable reason).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Union

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LMNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    # web pages "elsewhere" for the server tests; evil.example on 127.0.0.1 is a DNS-rebinding page
    "--host-resolver-rules=MAP friend.example 127.0.0.1, MAP evil.example 127.0.0.1",
]
VIEWPORT = {"width": 1400, "height": 1000}

# Bounded waits (seconds). A full lab start (server up, page loaded, kernel idle) takes ~7 s on
# 2 shared cores; SmolLM2 loads in ~1 s. The limits leave room for a loaded CI machine.
SERVER_START_TIMEOUT = 90
PAGE_OPEN_TIMEOUT = 90
KERNEL_IDLE_TIMEOUT = 90
CELL_TIMEOUT = 120

# JupyterLab user settings written before the server starts.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # 4.6 skips rendering cells outside the viewport by default; tests look at every cell.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no news/update toasts over the notebook (and no requests to the internet)
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # no autosave racing with notebooks the tests write; no "close without saving?" dialogs
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False, "confirmClosingDocument": False},
}


class LabError(RuntimeError):
    """The server, the page or a cell did not do what the test waited for."""


class CellError(LabError):
    """A cell raised an exception (its traceback is in the message)."""


# ----------------------------------------------------------------------------------------- helpers


def artifacts_dir() -> Path:
    """Where screenshots go: $LMNB_TEST_ARTIFACTS, else test-artifacts/browser/ in the repo (gitignored)."""
    env = os.environ.get("LMNB_TEST_ARTIFACTS")
    path = Path(env) if env else REPO_ROOT / "test-artifacts" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def browser_unavailable_reason() -> Optional[str]:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; it drives Debian's chromium, no download)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed (pip install jupyterlab)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "notebook"


POLL_MAX_INTERVAL = 0.5


def poll(predicate: Callable[[], Any], timeout: float, message: Union[str, Callable[[], str]] = "",
         interval: float = 0.1) -> Any:
    """Call predicate until it returns something truthy (returned); LabError after timeout seconds.

    The wait between calls starts at ``interval`` and grows to ``POLL_MAX_INTERVAL``: each call is
    a round trip through Playwright into the page, and asking 20 times a second through a
    30-second generation took half a core from the model under test (72 s of CPU in one test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = message() if callable(message) else message
            raise LabError(f"timed out after {timeout:g} s: {msg or predicate}")
        time.sleep(interval)
        interval = min(interval * 1.5, max(interval, POLL_MAX_INTERVAL))


# ------------------------------------------------------------------------------------------ server


class LabServer:
    """`python -m jupyter lab` on a free port, with a random token and every Jupyter dir in `base`."""

    def __init__(self, base: Union[str, Path], python: str = sys.executable, checkout: bool = True) -> None:
        """``python``: the interpreter of the server and its kernels; ``checkout``: put this
        checkout first on their path (False: they import lmnb as installed in ``python``'s env)."""
        self.base = Path(base)
        self.python = python
        self.root = self.base / "root"  # the lab's root directory: notebooks are written here
        self.token = secrets.token_hex(24)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.base / "jupyterlab.log"
        self._log: Any = None
        self._pids: set[int] = set()  # every process the server started (kernels: own sessions)
        d = self.base
        self.env = dict(os.environ)
        for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTERLAB_DIR", "JUPYTER_PREFER_ENV_PATH"):
            self.env.pop(var, None)
        self.env.update(
            JUPYTER_CONFIG_DIR=str(d / "jupyter-config"),
            JUPYTER_DATA_DIR=str(d / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(d / "jupyter-runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(d / "jupyter-config" / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(d / "jupyter-config" / "lab" / "workspaces"),
            IPYTHONDIR=str(d / "ipython"),
            XDG_DATA_HOME=str(d / "xdg-data"),  # lmnb's history and presets (platformdirs)
            XDG_CONFIG_HOME=str(d / "xdg-config"),
            XDG_CACHE_HOME=str(d / "xdg-cache"),
            XDG_STATE_HOME=str(d / "xdg-state"),
            HF_HOME=str(d / "hf"),
            HF_HUB_OFFLINE="1",  # the browser tests never download
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONUNBUFFERED="1",
        )
        if checkout:
            # The kernel imports lmnb from this checkout (the code under test), whatever is installed.
            pythonpath = [str(REPO_ROOT)] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
            self.env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        else:
            self.env.pop("PYTHONPATH", None)
            bindir = str(Path(python).parent)
            self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", "")])
            self.env["VIRTUAL_ENV"] = str(Path(python).parent.parent)

    # --- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        for key in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                    "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "HF_HOME"):
            Path(self.env[key]).mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        # The Python kernel is this interpreter: a kernelspec in the user data dir shadows the
        # installed python3 spec (whose argv is a bare "python" from PATH).
        spec_dir = Path(self.env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        settings = Path(self.env["JUPYTERLAB_SETTINGS_DIR"])
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=1))

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> "LabServer":
        self._prepare()
        last_error = ""
        for _attempt in range(3):  # a port picked by free_port() can be taken before the server binds it
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.python, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                 f"--port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                 f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                 "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for reading cell models
                 "--ServerApp.terminals_enabled=False"],
                env=self.env, cwd=str(self.root), stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status = self.api("GET", "/api/status", timeout=2)
                    if isinstance(status, dict):
                        return self
                except (OSError, urllib.error.URLError, ValueError):
                    pass
                time.sleep(0.2)
            last_error = self.log_tail()
            if self.proc.poll() is None:  # up but not answering: give up
                self.stop()
                raise LabError(f"jupyter lab did not answer /api/status within {timeout:g} s:\n{last_error}")
            self._log.close()
        raise LabError(f"jupyter lab exited while starting:\n{last_error}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _remember_children(self) -> None:
        if self.proc is None:
            return
        try:
            import psutil

            self._pids.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
        except Exception:  # the server may be gone already
            pass

    def stop(self, timeout: float = 20) -> list[int]:
        """Shut the server and all its kernels down; return the pids that had to be killed."""
        if self.proc is None:
            return []
        import psutil

        self._remember_children()
        killed: list[int] = []
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(self.proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        self.proc.wait(5)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                killed.append(self.proc.pid)
        # kernels run in their own process groups: make sure none outlives the server
        leftovers = []
        for pid in self._pids:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(p)
            except psutil.NoSuchProcess:
                pass
        for p in leftovers:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        killed.extend(p.pid for p in leftovers)
        if self._log is not None:
            self._log.close()
        self.proc = None
        return killed

    # --- REST API

    def url_for(self, path: str, **query: str) -> str:
        """A URL on the server, logged in by the token (`?reset` and the like go in `query`)."""
        q = "&".join(k if v == "" else f"{k}={urllib.parse.quote(v)}" for k, v in query.items())
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}{q + '&' if q else ''}token={self.token}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def kernels(self) -> list[dict]:
        return self.api("GET", "/api/kernels")

    def sessions(self) -> list[dict]:
        return self.api("GET", "/api/sessions")

    def shutdown_session(self, path: str) -> None:
        """Stop the kernel of the notebook at `path` (relative to the root), if it has one."""
        self._remember_children()
        for s in self.sessions():
            if s.get("path") == path:
                self.api("DELETE", f"/api/sessions/{s['id']}")

    def write_notebook(self, name: str, cells: list[Union[str, dict]]) -> str:
        """Write `name` (.ipynb) into the root: code cells from strings, or {"markdown": text}."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for c in cells:
            if isinstance(c, dict) and "markdown" in c:
                nb.cells.append(nbformat.v4.new_markdown_cell(c["markdown"]))
            else:
                nb.cells.append(nbformat.v4.new_code_cell(c if isinstance(c, str) else c["code"]))
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return name


# ----------------------------------------------------------------------------------------- browser


class PageLog:
    """What went wrong in the page: console errors, uncaught exceptions, and dialogs (dismissed)."""

    def __init__(self, page: Any) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._on_dialog)

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        try:
            dialog.dismiss()
        except Exception:
            pass

    def errors(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Page errors and console errors, minus those containing one of `ignore`."""
        return [e for e in self.page_errors + self.console_errors if not any(s in e for s in ignore)]


class Browser:
    """Debian's Chromium, headless, with a throwaway profile and HOME."""

    def __init__(self, base: Union[str, Path], viewport: Optional[dict] = None) -> None:
        self.base = Path(base)
        self.viewport = viewport or dict(VIEWPORT)
        self._pw: Any = None
        self.context: Any = None

    def start(self) -> "Browser":
        from playwright.sync_api import sync_playwright

        home = self.base / "home"
        env = dict(os.environ)
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
                   XDG_DATA_HOME=str(home / ".local" / "share"), XDG_RUNTIME_DIR=str(self.base / "run"))
        for key in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        os.chmod(env["XDG_RUNTIME_DIR"], 0o700)
        self._pw = sync_playwright().start()
        try:
            self.context = self._pw.chromium.launch_persistent_context(
                user_data_dir=str(self.base / "profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, env=env, viewport=self.viewport, timeout=60_000,
            )  # fmt: skip
        except Exception:
            self._pw.stop()
            self._pw = None
            raise
        return self

    def new_page(self) -> tuple[Any, PageLog]:
        page = self.context.new_page()
        page.set_default_timeout(30_000)
        return page, PageLog(page)

    def close(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            finally:
                self.context = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None


# ---------------------------------------------------------------------------------------- notebook

# JS helpers run in the page; `path` picks the notebook panel by its file path.
_JS_PANEL = """
function panel(path) {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
}
"""


def _js(body: str) -> str:
    return f"(args) => {{ {_JS_PANEL}\n {body} }}"


_JS_KERNEL_STATE = _js("""
  if (!window.jupyterapp) return 'app not exposed yet';
  const p = panel(args.path);
  if (!p) return 'notebook panel not open';
  if (document.querySelector('.jp-Dialog')) return 'dialog open';
  const ctx = p.sessionContext;
  if (!ctx.session || !ctx.session.kernel) return 'no kernel';
  const k = ctx.session.kernel;
  return k.connectionStatus + '/' + k.status;
""")
_JS_OUTPUTS = _js("""
  const p = panel(args.path);
  return p.content.widgets[args.i].model.toJSON().outputs || [];
""")
_JS_N_CELLS = _js("return panel(args.path).content.widgets.length;")
_JS_INSERT = _js("""
  const p = panel(args.path);
  const n = p.content.widgets.length;
  p.content.model.sharedModel.insertCell(n, {cell_type: args.cell_type, source: args.source, metadata: {}});
  return n;
""")
_JS_SET_SOURCE = _js("panel(args.path).content.widgets[args.i].model.sharedModel.setSource(args.source); return true;")


class Notebook:
    """One notebook open in JupyterLab, with its own kernel.

    `run_cell(i)` runs cell i through the UI (selects it, Ctrl+Enter) and waits for its prompt to show
    a new execution count; `output_text(i)` is what the user sees; `outputs(i)` is the nbformat list.
    """

    def __init__(self, lab: LabServer, page: Any, path: str, log: Optional[PageLog] = None) -> None:
        self.lab, self.page, self.path = lab, page, path
        self.log = log or PageLog(page)
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    @classmethod
    def create(cls, lab: LabServer, page: Any, cells: list[Union[str, dict]], name: str = "notebook.ipynb",
               log: Optional[PageLog] = None, timeout: float = PAGE_OPEN_TIMEOUT) -> "Notebook":
        """Write a notebook with these cell sources into the lab root and open it."""
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        lab.write_notebook(name, cells)
        nb = cls(lab, page, name, log)
        nb.open(timeout)
        return nb

    # --- opening

    def open(self, timeout: float = PAGE_OPEN_TIMEOUT, collapse_sidebars: bool = True) -> "Notebook":
        """Open at /lab/tree/<path>?reset (no restored tabs), accept the kernel, wait for it to be idle."""
        url = self.lab.url_for("/lab/tree/" + urllib.parse.quote(self.path), reset="")
        self.page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        self.panel.first.wait_for(state="visible", timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)
        if collapse_sidebars:  # the page does not scroll: give the notebook the whole width
            self.page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }")
        return self

    def kernel_state(self) -> str:
        try:
            return self.page.evaluate(_JS_KERNEL_STATE, {"path": self.path})
        except Exception as exc:  # the page is navigating
            return f"page not ready ({type(exc).__name__})"

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE_TIMEOUT) -> None:
        """Wait until this notebook's kernel is connected and idle, accepting a kernel dialog if asked.

        The toolbar's execution indicator says "idle" before any kernel is attached, so this asks the
        session itself (through window.jupyterapp).
        """
        state = {"last": ""}

        def ready() -> bool:
            dialog = self.page.locator(".jp-Dialog")
            if dialog.count() and dialog.locator("select").count():  # "Select Kernel": take the default
                dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
            state["last"] = self.kernel_state()
            return state["last"] == "connected/idle"

        poll(ready, timeout, lambda: f"kernel of {self.path} not idle (last state: {state['last']})", 0.2)

    # --- cells

    def cell(self, i: int) -> Any:
        """Locator of cell i (0-based)."""
        return self.cells.nth(i)

    def output(self, i: int) -> Any:
        """Locator of cell i's output area."""
        return self.cell(i).locator(".jp-OutputArea")

    def n_cells(self) -> int:
        return self.page.evaluate(_JS_N_CELLS, {"path": self.path})

    def prompt(self, i: int) -> str:
        """The input prompt text: '[ ]:', '[*]:' while running, '[12]:' after."""
        return self.cell(i).locator(".jp-InputPrompt").inner_text().strip()

    def set_source(self, i: int, source: str) -> None:
        self.page.evaluate(_JS_SET_SOURCE, {"path": self.path, "i": i, "source": source})

    def add_cell(self, source: str, cell_type: str = "code") -> int:
        """Append a cell; return its index."""
        i = self.page.evaluate(_JS_INSERT, {"path": self.path, "source": source, "cell_type": cell_type})
        self.cell(i).wait_for(state="attached")
        return i

    def select(self, i: int) -> None:
        """Select cell i in command mode (a click on its input prompt)."""
        prompt = self.cell(i).locator(".jp-InputPrompt")
        prompt.scroll_into_view_if_needed()
        prompt.click()

    def start_cell(self, i: int) -> str:
        """Select cell i and run it (Ctrl+Enter: run, stay on the cell) without waiting; return the old prompt."""
        before = self.prompt(i)
        self.select(i)
        self.page.keyboard.press("Control+Enter")
        return before

    def wait_cell(self, i: int, before: str, timeout: float = CELL_TIMEOUT, check: bool = True) -> int:
        """Wait until cell i's prompt shows an execution count other than `before`; return the count."""

        def done() -> Optional[int]:
            now = self.prompt(i)
            m = re.match(r"\[(\d+)\]", now)
            return int(m.group(1)) if m and now != before else None

        count = poll(done, timeout, lambda: f"cell {i} still running (prompt {self.prompt(i)!r}, was {before!r})",
                     0.05)  # fmt: skip
        if check:
            self.raise_for_error(i)
        return count

    def run_cell(self, i: int, timeout: float = CELL_TIMEOUT, check: bool = True) -> int:
        """Run cell i through the UI and wait for it to finish; CellError if it raised (check=True)."""
        before = self.start_cell(i)
        return self.wait_cell(i, before, timeout, check)

    def execute(self, source: str, timeout: float = CELL_TIMEOUT, check: bool = True) -> int:
        """Append a code cell with `source`, run it, wait; return the cell's index."""
        i = self.add_cell(source)
        self.run_cell(i, timeout, check)
        return i

    def run_all(self, timeout: float = CELL_TIMEOUT * 3, check: bool = True) -> None:
        for i in range(self.n_cells()):
            self.run_cell(i, timeout, check)

    def outputs(self, i: int) -> list[dict]:
        """Cell i's outputs as nbformat dicts (from the notebook model)."""
        return self.page.evaluate(_JS_OUTPUTS, {"path": self.path, "i": i})

    def raise_for_error(self, i: int) -> None:
        for out in self.outputs(i):
            if out.get("output_type") == "error":
                tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.get("traceback") or []))
                raise CellError(f"cell {i} raised {out.get('ename')}: {out.get('evalue')}\n{tb}")

    def output_text(self, i: int) -> str:
        """The text of cell i's rendered output, as shown."""
        area = self.output(i)
        return area.inner_text() if area.count() else ""

    def stream_text(self, i: int) -> str:
        """stdout/stderr text cell i printed (from the model)."""
        return "".join(o.get("text", "") for o in self.outputs(i) if o.get("output_type") == "stream")

    # --- waiting, screenshots, cleanup

    def wait_for(self, what: Any, timeout: float = 30, message: str = "", interval: float = 0.1) -> Any:
        """Wait for a Locator to be visible, a JS predicate string to be truthy, or a Python callable."""
        if isinstance(what, str):
            return self.page.wait_for_function(what, timeout=timeout * 1000, polling=int(interval * 1000))
        if callable(what):
            return poll(what, timeout, message, interval)
        what.first.wait_for(state="visible", timeout=timeout * 1000)
        return what

    def screenshot(self, name: str, locator: Any = None, max_height: int = 4000) -> Path:
        """Save a PNG of the page (or of `locator`) into the artifacts dir; return its path.

        JupyterLab's page does not scroll (the notebook scrolls inside it), so an element taller than
        the viewport is shot with the viewport enlarged to fit it (up to max_height), then restored.
        """
        path = artifacts_dir() / f"{safe_name(name)}.png"
        if locator is None:
            self.page.screenshot(path=str(path))
            return path
        target = locator.first
        size = self.page.viewport_size
        box = target.bounding_box()
        if size and box and box["height"] > size["height"] - 200:
            self.page.set_viewport_size({"width": size["width"],
                                         "height": min(int(box["height"]) + 300, max_height)})
            self.page.wait_for_timeout(300)  # Lumino lays the panels out again
            try:
                target.scroll_into_view_if_needed()
                target.screenshot(path=str(path))
            finally:
                self.page.set_viewport_size(size)
                self.page.wait_for_timeout(200)
        else:
            target.screenshot(path=str(path))
        return path

    def close(self) -> None:
        """Stop this notebook's kernel and close the page."""
        try:
            self.lab.shutdown_session(self.path)
        finally:
            try:
                self.page.close()
            except Exception:
                pass
