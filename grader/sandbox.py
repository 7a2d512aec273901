"""Run untrusted code in a subprocess with limits.

What it does (and what the OS lets it do):
  * wall-clock timeout; on expiry the whole process group is killed (start_new_session + killpg),
    so grandchildren do not outlive it;
  * RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space; torch needs >= 4 GiB to import),
    RLIMIT_FSIZE (largest file it may write), RLIMIT_CORE 0;
  * a scrubbed environment: only PATH, HOME, TMPDIR, LANG and the variables the caller passes;
  * a temporary working directory (the caller's `cwd`);
  * no network, through `unshare -rn` (a new user and network namespace) when that works here;
    otherwise it runs with the network of the host and says so in `network_isolated`.

It does not isolate the file system: the code runs as the grading user. Grade on a machine or
container you can throw away (docs/GRADING.md).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

GIB = 1 << 30
DEFAULT_MEMORY = 6 * GIB      # import torch fails below about 2 GiB of address space
DEFAULT_FILE_SIZE = 256 << 20  # a training run writes a few MB
TAIL = 4000


@dataclass
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    network_isolated: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def why(self) -> str:
        if self.timed_out:
            return "stopped at the wall-clock limit"
        if self.returncode is not None and self.returncode < 0:
            sig = -self.returncode
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = " (CPU-time limit)" if sig in (signal.SIGXCPU, signal.SIGKILL) else ""
            return f"killed by {name}{hint}"
        last = (self.stderr.strip().splitlines() or ["no output"])[-1]
        return f"exit status {self.returncode}: {last[:300]}"


def scrubbed_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a run sees: nothing of the caller's except a minimal PATH.

    PYTHONHASHSEED is fixed and no OMP/MKL/ATEN variable leaks in, so the run's bits depend on
    the code, the seed and the machine only."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "BREAKLAB_CACHE": str(home / ".cache" / "breaklab"),
    }
    env.update(extra or {})
    return env


@lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """`unshare -rn` needs unprivileged user namespaces (or root); probe it once."""
    exe = shutil.which("unshare")
    if not exe:
        return False
    try:
        probe = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _limits(cpu_seconds: int, memory_bytes: int, file_size: int):
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_sandboxed(argv: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str] | None = None,
                  cpu_seconds: int | None = None, memory_bytes: int = DEFAULT_MEMORY,
                  file_size: int = DEFAULT_FILE_SIZE, isolate_network: bool = True) -> SandboxResult:
    """Run argv in cwd under the limits above; never raises for what the child does."""
    cwd = Path(cwd)
    home = cwd / ".home"
    home.mkdir(parents=True, exist_ok=True)
    isolated = isolate_network and network_isolation_available()
    cmd = (["unshare", "-rn"] if isolated else []) + list(argv)
    cpu = int(cpu_seconds if cpu_seconds is not None else 2 * timeout + 10)
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=scrubbed_env(home, env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_limits(cpu, memory_bytes, file_size))
    except OSError as e:
        return SandboxResult(None, "", f"cannot start {argv[0]}: {e}", False, isolated)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        _kill_group(proc.pid)  # whatever the child left behind in its session
    return SandboxResult(proc.returncode, _tail(out), _tail(err), timed_out, isolated)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(data: bytes) -> str:
    return data[-TAIL:].decode("utf-8", errors="replace")


def python() -> str:
    """The interpreter that runs the trainings: this one, so torch is the grader's own."""
    return sys.executable
