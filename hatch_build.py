"""Build hook: compile lmnb/engine/greedy_steps.c into the shared library lmnb loads with ctypes.

The library has no Python ABI and links against nothing but libc (llama.cpp is reached through
function pointers at run time), so one build serves every Python of the platform. Where no C
compiler is found, or the compile fails, the wheel is built without it and lmnb takes every step
in Python (lmnb/engine/native.py), with the same results, ~1-3% slower on small models.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = os.path.join("lmnb", "engine", "greedy_steps.c")
LIBRARY = os.path.join("lmnb", "engine", "_greedy_steps" + (".dll" if sys.platform == "win32" else ".so"))


class GreedyStepsHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        source, library = (os.path.join(self.root, p) for p in (SOURCE, LIBRARY))
        cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
        if cc is None:
            self.app.display_warning("lmnb: no C compiler found; the greedy step stays in Python")
            return
        try:
            subprocess.run([cc, "-O2", "-shared", "-fPIC", source, "-o", library], check=True, capture_output=True,
                           text=True)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as e:
            self.app.display_warning(f"lmnb: {SOURCE} did not compile ({getattr(e, 'stderr', e)}); "
                                     "the greedy step stays in Python")  # fmt: skip
            return
        build_data["artifacts"].append(LIBRARY.replace(os.sep, "/"))  # built, so not in git
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
