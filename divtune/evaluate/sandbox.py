"""Run untrusted (model-written) Python in a separate, limited process.

Used by the offline HumanEval metric (``divtune/evaluate/lm_eval_tasks/utils.py``), the local stand-in for
``evaluate.load("code_eval")``, which lm-eval's stock HumanEval task fetches from the hub.

Each program runs in a fresh ``python -I`` subprocess:

* in its own temporary working directory (deleted afterwards) and its own session (the whole process group is
  killed on timeout);
* with a wall-clock time limit, plus ``resource`` limits set before the program starts: CPU seconds, address
  space, size of any file written, open files, no core dumps;
* with a minimal environment (no credentials, no proxies, ``HOME``/``TMPDIR`` inside the temp dir);
* after a guard in the child that disables the destructive and process-spawning calls of ``os``/``shutil``/
  ``subprocess`` (OpenAI human-eval's ``reliability_guard`` list, less ``os.putenv``, which numpy's import
  needs and which is harmless in a throw-away process), so tests of a correct solution run normally while a
  stray ``os.system`` or ``shutil.rmtree`` fails.

This is a guard against accidents (infinite loops, runaway memory, scribbling files), not a security
boundary against a hostile model: there is no network namespace. Run it in a container for that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_MAX_FILE_MB = 16

# The child: set limits, disable destructive calls, run the program from a file in the temp cwd.
_RUNNER = r'''
import sys, resource
cpu, mem, fsize = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def _lim(name, value):
    what = getattr(resource, name, None)
    if what is None:
        return
    try:
        soft, hard = resource.getrlimit(what)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(what, (value, value if hard == resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        pass
_lim("RLIMIT_CPU", cpu)
if mem > 0:
    _lim("RLIMIT_AS", mem)
    _lim("RLIMIT_DATA", mem)
_lim("RLIMIT_FSIZE", fsize)
_lim("RLIMIT_NOFILE", 64)
_lim("RLIMIT_CORE", 0)
source = open(sys.argv[1], encoding="utf-8").read()
import builtins, faulthandler, os, shutil, subprocess
faulthandler.disable()
for _mod, _names in ((os, ("kill", "killpg", "system", "remove", "removedirs", "rmdir", "fchdir",
                           "setuid", "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink",
                           "fchmod", "fchown", "chmod", "chown", "chroot", "lchown", "execv", "execve",
                           "execvp", "execvpe", "spawnv", "spawnve", "posix_spawn", "posix_spawnp")),
                     (shutil, ("rmtree", "move", "chown")), (subprocess, ("Popen", "run", "call", "check_call",
                                                                          "check_output"))):
    for _n in _names:
        if hasattr(_mod, _n):
            setattr(_mod, _n, None)
builtins.help = None
for _m in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
    sys.modules[_m] = None
sys.argv = ["candidate.py"]
exec(compile(source, "candidate.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
'''


@dataclass(frozen=True)
class ExecResult:
    """How one program ended: ``passed`` (exit 0), ``failed`` (an exception / nonzero exit) or ``timeout``."""

    status: str
    returncode: int | None
    duration_s: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(tmp: Path) -> dict[str, str]:
    """A minimal environment: nothing from the parent but the locale (no credentials, tokens or proxies)."""
    return {"PATH": os.defpath, "HOME": str(tmp), "TMPDIR": str(tmp), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1", "no_proxy": "*", "NO_PROXY": "*"}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_python(program: str, *, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
               max_file_mb: int = DEFAULT_MAX_FILE_MB, python: str | None = None) -> ExecResult:
    """Run ``program`` (Python source) in a sandboxed subprocess; ``passed`` iff it exits 0 within ``timeout`` s."""
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    tmp = Path(tempfile.mkdtemp(prefix="divtune-sandbox-"))
    try:
        (tmp / "candidate.py").write_text(program, encoding="utf-8")
        (tmp / "_runner.py").write_text(_RUNNER, encoding="utf-8")
        cmd = [python or sys.executable, "-I", str(tmp / "_runner.py"), str(tmp / "candidate.py"),
               str(int(timeout) + 1), str(memory_mb * 1024 * 1024), str(max_file_mb * 1024 * 1024)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp, env=_env(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return ExecResult("timeout", None, time.monotonic() - t0, f"timed out after {timeout:g} s")
        dt = time.monotonic() - t0
        text = err.decode("utf-8", "replace")
        if proc.returncode == 0:
            return ExecResult("passed", 0, dt)
        if proc.returncode is not None and proc.returncode < 0:
            sig = -proc.returncode
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            detail = f"killed by {name}" + (" (CPU time limit)" if name == "SIGXCPU" else "")
            return ExecResult("timeout" if name == "SIGXCPU" else "failed", proc.returncode, dt, detail)
        return ExecResult("failed", proc.returncode, dt, _last_line(text))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program's session (it is still unreaped here, so the group id cannot have been reused)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
