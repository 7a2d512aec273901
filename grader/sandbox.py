"""Run untrusted code in a subprocess with limits, cut off from the file system and the network.

What it does (and what the OS lets it do):
  * wall-clock timeout; on expiry every process of the run is killed (its own process group, and
    with isolation its own PID namespace, whose processes all die with it);
  * RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space; torch needs >= 4 GiB to import),
    RLIMIT_FSIZE (largest file it may write), RLIMIT_CORE 0, and a cap on the number of processes
    (watched every POLL seconds; RLIMIT_NPROC too where the grader is not root);
  * a scrubbed environment: only PATH, HOME, TMPDIR, LANG and the variables the caller passes;
    HOME, TMPDIR and the data cache lie inside the working directory (the caller's `cwd`);
  * a file system of its own, where util-linux `unshare` can make a mount namespace (through an
    unprivileged user namespace, or as root): a new root holding read-only binds of the system
    folders (/usr, /etc, /lib...) and of the Python installation that runs it, the folders the
    caller passes as `readable` (read-only), `cwd` (read-write), the harmless devices (/dev/null,
    /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty), a fresh /proc with /proc/sys
    read-only, and /sys read-only; `pivot_root` into it and the old root detached, then `setpriv`
    drops every capability, so nothing can be re-mounted. Nothing else of the machine exists for
    the run: not the other submissions, not the course repository or solutions/, not the grades,
    not the grading user's home. The grader's own package and answers are hidden even where they
    lie inside the Python installation (an installed breaklab). A write anywhere but `cwd` fails;
  * no network: a new network namespace with no interface up (connections fail with
    ENETUNREACH); with file-system isolation unavailable, `unshare -rn` alone where it works;
  * an audit hook in every Python process of the run (a `sitecustomize` on PYTHONPATH) that refuses
    opening a file for writing outside `cwd`, and connecting to or resolving a network address,
    and reports each attempt to the sandbox through an inherited file descriptor. It names what was
    tried, and it is the only guard left where the kernel's isolation is unavailable (there it
    stops Python code, not native code, and reading is not restricted at all:
    `SandboxResult.fs_isolated` says which; the grader refuses to run students' code there unless
    told --no-isolation).

When the sandbox stops a run for a limit or a refused action, `SandboxResult.violation` says why;
the grader gives such a submission 0. An ordinary failure (an exception, a non-zero exit) is not a
violation.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

GIB = 1 << 30
DEFAULT_MEMORY = 6 * GIB      # import torch fails below about 2 GiB of address space
DEFAULT_FILE_SIZE = 256 << 20  # a training run writes a few MB
MAX_PROCESSES = 32             # a training run is 2-4 processes (the wrappers, python, git)
POLL = 0.1                     # seconds between two counts of the run's processes
TAIL = 4000
REPORT_LIMIT = 64 << 10        # bytes of the audit hook's reports read back

# Devices a program may write to (they store nothing); the run's /dev holds no other.
SAFE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")

# Runs inside the new mount namespace as its PID 1 and builds the run's whole view of the files:
#   1. every mount is re-mounted read-only, nosuid and nodev (so every bind below starts read-only);
#   2. a new, empty root (a small tmpfs on the folder $2) gets read-only binds of the system and the
#      Python installation only (arguments up to "--hide"), with an empty read-only folder over each
#      path after "--hide" that lies inside them (the grader's own answers, when installed there);
#   3. its own /dev with the harmless devices only, a fresh /proc (/proc/sys read-only), /sys
#      read-only, and the work folder $1 read-write;
#   4. pivot_root into it and detach the old root: nothing else of the machine is reachable, not
#      even by path (other submissions, the course repository, the output folder, home folders);
#   5. enter the work folder and run the command. Not `exec`: the command must not be the
#      namespace's init, which the kernel shields from signals such as SIGXCPU. The exit status is
#      the command's, 128+N when signal N killed it.
# A step that fails stops the setup with its own status (_SETUP_FAILED): the probe then finds no
# isolation. findmnt escapes odd characters in mount point names; such a mount point stops step 1.
_SETUP = r"""
set -u
run_path=$PATH
PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH
work=$1; root=$2; shift 2
findmnt -rn -o TARGET | while read -r target; do
  mount -o remount,bind,ro,nosuid,nodev "$target" || exit 121
done || exit 121
mount -t tmpfs -o mode=0755,size=1m breaklab-root "$root" || exit 124
while [ $# -gt 0 ] && [ "$1" != "--hide" ]; do
  p=$1; shift
  if [ -L "$p" ]; then
    mkdir -p "$root${p%/*}" && ln -s "$(readlink "$p")" "$root$p" || exit 124
  elif [ -d "$p" ]; then
    { mkdir -p "$root$p" && mount --rbind "$p" "$root$p" && mount -o remount,bind,ro,nosuid,nodev "$root$p"; } || exit 124
  elif [ -e "$p" ]; then
    { mkdir -p "$root${p%/*}" && : > "$root$p" && mount --bind "$p" "$root$p" && mount -o remount,bind,ro,nosuid,nodev "$root$p"; } || exit 124
  fi
done
shift
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  p=$1; shift
  [ -d "$root$p" ] || continue
  mount -t tmpfs -o ro,mode=0555,size=4k breaklab-hidden "$root$p" || exit 124
done
shift
mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/.old-root" "$root$work" || exit 124
mount -t tmpfs -o mode=0755,size=64k,nosuid breaklab-dev "$root/dev" || exit 123
for d in """ + " ".join(("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")) + r"""; do
  [ -e "$d" ] || continue
  { : > "$root$d" && mount --bind "$d" "$root$d" && mount -o remount,bind,rw,nosuid,dev "$root$d"; } || exit 123
done
{ ln -s /proc/self/fd "$root/dev/fd" && ln -s /proc/self/fd/0 "$root/dev/stdin" &&
  ln -s /proc/self/fd/1 "$root/dev/stdout" && ln -s /proc/self/fd/2 "$root/dev/stderr" &&
  mount -o remount,bind,ro,nosuid "$root/dev"; } || exit 123
mount -t proc -o nosuid,nodev,noexec proc "$root/proc" || exit 125
{ mount --bind "$root/proc/sys" "$root/proc/sys" && mount -o remount,bind,ro "$root/proc/sys"; } || exit 125
if [ -e "$root/proc/sysrq-trigger" ]; then
  { mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger" &&
    mount -o remount,bind,ro "$root/proc/sysrq-trigger"; } || exit 125
fi
{ mount --rbind /sys "$root/sys" && mount -o remount,bind,ro,nosuid,nodev "$root/sys"; } || exit 125
{ mount --bind "$work" "$root$work" && mount -o remount,bind,rw,nosuid,nodev "$root$work"; } || exit 120
mount -o remount,bind,ro "$root" || exit 124
{ cd "$root" && pivot_root . .old-root && cd / && umount -l /.old-root; } || exit 126
cd "$work" || exit 122
PATH=$run_path
"$@"
exit $?
"""
_DROP_CAPS = ["setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
_SETUP_FAILED = {120: "cannot bind the work folder", 121: "cannot re-mount the file system read-only",
                 122: "cannot enter the work folder", 123: "cannot make the run's /dev",
                 124: "cannot build the run's root (system and Python folders)",
                 125: "cannot mount /proc or /sys", 126: "cannot switch to the run's root"}
_TOOLS = ("unshare", "setpriv", "findmnt", "mount", "umount", "pivot_root", "sh", "mkdir", "ln", "readlink")

# What a run may read besides its own folder: the system and the Python installation that runs it.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


# The audit hook. Python runs it at start-up (site imports `sitecustomize` from PYTHONPATH) before
# any of the run's own code; hooks cannot be removed once added.
_HOOK = r'''
"""breaklab sandbox: refuse writes outside the work folder and network access, and report them."""
import os as _os
import sys as _sys


def _install():
    fd = int(_os.environ.get("BREAKLAB_SANDBOX_FD", "-1"))
    root = _os.path.realpath(_os.environ.get("BREAKLAB_SANDBOX_ROOT") or _os.getcwd())
    safe = set(_os.environ.get("BREAKLAB_SANDBOX_DEVICES", "").split(":"))
    writing = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND
    busy = []
    # Events whose first argument is a path the call changes: the position of their dir_fd.
    path_events = {"os.mkdir": 2, "os.remove": 1, "os.rmdir": 1, "os.chmod": 2, "os.chown": 3,
                   "os.utime": 3, "os.truncate": None, "os.setxattr": None, "os.removexattr": None,
                   "shutil.rmtree": 1}

    def outside(path, dir_fd=None):
        if isinstance(path, int) or path is None or dir_fd is not None:
            return None  # a descriptor, or relative to one: the kernel decides
        try:
            full = _os.path.realpath(_os.fsdecode(_os.fspath(path)))
        except (TypeError, ValueError):
            return None
        if full == root or full.startswith(root + _os.sep) or full in safe:
            return None
        return full

    def refuse(kind, what, exc):
        try:
            _os.write(fd, (kind + "\t" + str(what)[:300].replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
        raise exc

    def no_write(path):
        refuse("write", path, PermissionError(13, "breaklab sandbox: writing outside the work folder is not allowed", path))

    def no_network(what):
        refuse("network", what, PermissionError(13, "breaklab sandbox: network access is not allowed", str(what)))

    def hook(event, args):
        if busy:
            return
        busy.append(1)
        try:
            if event == "open":
                if isinstance(args[2], int) and args[2] & writing:
                    bad = outside(args[0])
                    if bad:
                        no_write(bad)
            elif event in path_events:
                at = path_events[event]
                dir_fd = args[at] if at is not None and len(args) > at else None
                bad = outside(args[0], dir_fd if isinstance(dir_fd, int) else None)
                if bad:
                    no_write(bad)
            elif event in ("os.rename", "os.link"):
                for path in args[:2]:
                    bad = outside(path)
                    if bad:
                        no_write(bad)
            elif event == "os.symlink":
                bad = outside(args[1])
                if bad:
                    no_write(bad)
            elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
                import socket
                sock, address = args[0], args[1]
                if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
                    no_network(address)
            elif event == "socket.getaddrinfo" and args[0] is not None:
                no_network(args[0])
            elif event == "socket.gethostbyname":
                no_network(args[0])
        finally:
            busy.pop()

    _sys.addaudithook(hook)


if "BREAKLAB_SANDBOX_FD" in _os.environ:
    _install()
del _install
'''


@dataclass
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    network_isolated: bool
    fs_isolated: bool = False
    violation: str | None = None   # why the sandbox stopped the run, when it did
    attempts: list[str] = field(default_factory=list)  # what the audit hook refused

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.violation is None

    def why(self) -> str:
        if self.violation:
            return self.violation
        sig = _signal_of(self.returncode, self.fs_isolated)
        if sig is not None:
            return f"killed by {_signame(sig)}"
        if self.returncode is not None and self.returncode in _SETUP_FAILED and self.fs_isolated:
            return f"the sandbox could not start: {_SETUP_FAILED[self.returncode]}"
        last = (self.stderr.strip().splitlines() or ["no output"])[-1]
        return f"exit status {self.returncode}: {last[:300]}"


def scrubbed_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a run sees: nothing of the caller's except a minimal PATH.

    PYTHONHASHSEED is fixed and no OMP/MKL/ATEN variable leaks in, so the run's bits depend on
    the code, the seed and the machine only."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "BREAKLAB_CACHE": str(home / ".cache" / "breaklab"),
    }
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------------
# What this machine allows (probed once per process)
# ---------------------------------------------------------------------------------------------

def _unshare_flags() -> list[list[str]]:
    """Ways to make the namespaces, best first: a user namespace (root inside it is nobody special
    outside, and the read-only mounts are locked), then plain root."""
    base = ["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    ways = [["--user", "--map-root-user", *base]]
    if os.geteuid() == 0:
        ways.append(base)
    return ways


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]))


def _outermost(paths) -> list[str]:
    """The paths that do not lie inside another one of them (binding the outer one covers them)."""
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


@lru_cache(maxsize=1)
def system_paths() -> tuple[str, ...]:
    """What every run may read (read-only): the system folders and this Python's installation
    (its prefix, the virtual environment's, and the folder of the real interpreter)."""
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    paths = [p for p in SYSTEM_DIRS if os.path.lexists(p)]
    paths += [os.path.realpath(p) for p in python if p and os.path.isdir(p)]
    return tuple(_outermost(paths))


def hidden_paths() -> tuple[str, ...]:
    """What must stay out of reach even where it lies inside system_paths(): the grader's own
    package and its answers (an installed breaklab sits in the Python installation's
    site-packages). The run imports the course tree's breaklab, never this one."""
    import breaklab

    # The package's own folder, not every entry of its search path: in a checkout that path also
    # holds the checkout's root (breaklab/__init__.py), where the virtual environment may live.
    here = [os.path.realpath(os.path.dirname(breaklab.__file__))]
    try:
        from breaklab.solutions import SOLUTIONS_DIR
        here.append(os.path.realpath(SOLUTIONS_DIR))
    except ImportError:  # the student kit: no answers to hide
        pass
    return tuple(_outermost(here))


def exposed(path: Path | str) -> bool:
    """Whether a run could read path (it lies inside a system or Python folder and is not hidden)."""
    p = os.path.realpath(path)
    inside = lambda q: p == q or p.startswith(q.rstrip("/") + "/")
    return any(inside(q) for q in system_paths()) and not any(inside(q) for q in hidden_paths())


def _isolated_prefix(flags: list[str], work: Path, root: Path, readable=()) -> list[str]:
    paths = _outermost([*system_paths(), *(os.path.realpath(p) for p in readable)])
    return ["unshare", *flags, "sh", "-c", _SETUP, "breaklab-sandbox", str(work), str(root),
            *paths, "--hide", *hidden_paths(), "--", *_DROP_CAPS]


@lru_cache(maxsize=1)
def isolation_flags() -> tuple[str, ...] | None:
    """The `unshare` flags that isolate the file system here, or None. The probe checks the
    effect, not the exit status: the work folder is writable, a file beside it can be neither
    read nor written, and a folder passed as readable can be read but not written."""
    if not all(_which(t) for t in _TOOLS):
        return None
    for flags in _unshare_flags():
        probe = Path(tempfile.mkdtemp(prefix="breaklab-sandbox-probe-"))
        try:
            work, beside, shared, root = probe / "work", probe / "beside", probe / "shared", probe / "root"
            for d in (work, shared, root):
                d.mkdir()
            beside.write_text("secret\n")
            (shared / "code").write_text("code\n")
            script = (f'echo in > "{work}/in" && ! (echo out > "{probe}/out") 2>/dev/null && '
                      f'! cat "{beside}" 2>/dev/null && cat "{shared}/code" >/dev/null && '
                      f'! (echo x > "{shared}/x") 2>/dev/null')
            try:
                res = subprocess.run(_isolated_prefix(flags, work, root, [shared]) + ["sh", "-c", script],
                                     capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.SubprocessError):
                continue
            if (res.returncode == 0 and (work / "in").is_file() and not (probe / "out").exists()
                    and not (shared / "x").exists()):
                return tuple(flags)
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    return None


def fs_isolation_available() -> bool:
    return isolation_flags() is not None


@lru_cache(maxsize=1)
def _network_only_available() -> bool:
    exe = shutil.which("unshare")
    if not exe:
        return False
    try:
        probe = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def network_isolation_available() -> bool:
    """A new network namespace: part of the full isolation, or `unshare -rn` alone."""
    return fs_isolation_available() or _network_only_available()


def isolation_notes() -> list[str]:
    """What this machine's sandbox does not do, in words for a grade."""
    notes = []
    if not fs_isolation_available():
        notes.append("file system not isolated on this machine (no mount namespace: util-linux unshare "
                     "with user namespaces or root is needed): the code could read what the grading "
                     "user can, and only Python-level writes outside the work folder were refused")
    if not network_isolation_available():
        notes.append("network not isolated on this machine (no network namespace); only Python-level "
                     "connections were refused")
    return notes


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def _limits(cpu_seconds: int, memory_bytes: int, file_size: int, processes: int | None):

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    return apply


def _write_hook(home: Path) -> Path:
    site = home / ".sandbox-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_HOOK)  # rewritten every run: a run may have edited it
    return site


def run_sandboxed(argv: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str] | None = None,
                  cpu_seconds: int | None = None, memory_bytes: int = DEFAULT_MEMORY,
                  file_size: int = DEFAULT_FILE_SIZE, isolate_network: bool = True,
                  max_processes: int = MAX_PROCESSES, readable: Sequence[Path] = ()) -> SandboxResult:
    """Run argv in cwd under the limits above; never raises for what the child does.

    With isolation the run sees the system, this Python, cwd (read-write) and the `readable`
    folders (read-only), nothing else."""
    cwd = Path(cwd).resolve()
    home = cwd / ".home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    flags = isolation_flags() if isolate_network else None
    net_only = isolate_network and flags is None and _network_only_available()
    root = None
    if flags is not None:
        # The mount point of the run's root: an empty folder beside cwd, out of the run's sight.
        root = Path(tempfile.mkdtemp(prefix=f".{cwd.name}-root-", dir=cwd.parent))
        cmd = _isolated_prefix(list(flags), cwd, root, readable) + list(argv)
    else:
        cmd = (["unshare", "-rn"] if net_only else []) + list(argv)
    cpu = int(cpu_seconds if cpu_seconds is not None else 2 * timeout + 10)
    # RLIMIT_NPROC: root ignores it, and outside a user namespace it counts every process of the
    # grading user; inside one it counts that namespace's only, a hard cap on forks.
    nproc = max_processes if flags is not None and "--user" in flags and os.geteuid() != 0 else None
    # The audit hook's reports go to an unlinked file beside the work folder: out of the run's reach
    # by name, and the descriptor survives the run's exit.
    reports = tempfile.TemporaryFile(dir=cwd.parent)
    run_env = scrubbed_env(home, env)
    run_env.update(PYTHONPATH=str(_write_hook(home)), BREAKLAB_SANDBOX_FD=str(reports.fileno()),
                   BREAKLAB_SANDBOX_ROOT=str(cwd), BREAKLAB_SANDBOX_DEVICES=":".join(SAFE_DEVICES))
    with reports:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=run_env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(reports.fileno(),),
                                    start_new_session=True,
                                    preexec_fn=_limits(cpu, memory_bytes, file_size, nproc))
        except OSError as e:
            if root is not None:
                _remove_root(root)
            return SandboxResult(None, "", f"cannot start {argv[0]}: {e}", False, flags is not None or net_only,
                                 flags is not None)
        watch = _ProcessWatch(proc, max_processes)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            out, err = proc.communicate()
        finally:
            watch.stop()
            _kill(proc)  # whatever the child left behind in its session
        reports.seek(0)
        attempts = [line for line in reports.read(REPORT_LIMIT).decode("utf-8", "replace").splitlines() if line]
    if root is not None:
        _remove_root(root)
    result = SandboxResult(proc.returncode, _tail(out), _tail(err), timed_out, flags is not None or net_only,
                           flags is not None, attempts=attempts)
    result.violation = _violation(result, timeout, cpu, memory_bytes, watch.too_many)
    return result


def _remove_root(root: Path) -> None:
    """The root's mount point: the namespace (and its tmpfs) died with the run; only the empty
    folder is left here."""
    try:
        os.rmdir(root)
    except OSError:
        pass


class _ProcessWatch:
    """Counts the run's processes every POLL seconds and kills the run when there are too many."""

    def __init__(self, proc: subprocess.Popen, limit: int):
        self.proc, self.limit = proc, limit
        self.too_many: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            if self.proc.poll() is not None:
                return
            n = len(_descendants(self.proc.pid))
            if n > self.limit:
                self.too_many = n
                _kill(self.proc)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run's process group; with isolation, the namespace's processes die with it
    (`unshare --kill-child`), even those that left the group."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _signal_of(returncode: int | None, wrapped: bool) -> int | None:
    """The signal that ended the command: negative for a direct child; 128+N through the
    namespace's shell."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if wrapped and 128 < returncode < 128 + 65 and (returncode - 128) in signal.Signals._value2member_map_:
        return returncode - 128
    return None


def _signame(sig: int) -> str:
    return signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)


_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|\[Errno 12\]|std::bad_alloc|can't allocate memory")
_EROFS = re.compile(r"Read-only file system|\[Errno 30\]")
_NETWORK = re.compile(r"Network is unreachable|\[Errno 101\]|Temporary failure in name resolution"
                      r"|Name or service not known")


def _violation(res: SandboxResult, timeout: float, cpu: int, memory: int, processes: int | None) -> str | None:
    """Why the sandbox stopped the run (a limit, or an action it refused), or None when the run
    ended on its own (successfully or by an ordinary error)."""
    writes = [a.split("\t", 1)[1] for a in res.attempts if a.startswith("write\t")]
    nets = [a.split("\t", 1)[1] for a in res.attempts if a.startswith("network\t")]
    if writes:
        return f"tried to write outside its folder ({writes[0]}) and was refused"
    if nets:
        return f"tried to open a network connection ({nets[0]}) and was refused"
    if processes is not None:
        return f"stopped at the process limit ({processes} processes running, at most {MAX_PROCESSES})"
    if res.timed_out:
        return f"stopped at the wall-clock limit ({timeout:g} s)"
    if res.returncode == 0:
        return None
    sig = _signal_of(res.returncode, res.fs_isolated)
    if sig == signal.SIGXCPU:
        return f"killed by SIGXCPU at the CPU-time limit ({cpu} s)"
    if sig == signal.SIGKILL:
        return "killed by SIGKILL (the CPU-time hard limit or the kernel's out-of-memory killer)"
    if sig == signal.SIGXFSZ:
        return f"killed by SIGXFSZ at the file-size limit ({DEFAULT_FILE_SIZE >> 20} MiB)"
    err = res.stderr
    if _MEMORY.search(err):
        return f"stopped at the memory limit ({memory / GIB:g} GiB of address space): {_line(err, _MEMORY)}"
    if res.fs_isolated and _EROFS.search(err):
        return f"tried to write outside its folder and was refused: {_line(err, _EROFS)}"
    if res.network_isolated and _NETWORK.search(err):
        return f"tried to open a network connection and was refused: {_line(err, _NETWORK)}"
    return None


def _line(text: str, pattern: re.Pattern) -> str:
    for line in reversed(text.splitlines()):
        if pattern.search(line):
            return line.strip()[:300]
    return ""


def _tail(data: bytes) -> str:
    return data[-TAIL:].decode("utf-8", errors="replace")


def python() -> str:
    """The interpreter that runs the trainings: this one, so torch is the grader's own."""
    return sys.executable
