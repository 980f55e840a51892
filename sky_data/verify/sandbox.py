"""Run an untrusted Python program once: in its own session, under rlimits, isolated where the OS allows.

`run_sandboxed(files, argv, stdin, timeout_s, memory_mb)` writes `files` into a fresh temporary folder, runs
`python -I *argv` there through `_launcher.py` with stdin/stdout/stderr on pipes, kills everything it started
when it ends or overruns the wall clock, removes the folder and returns a `SandboxRun`.

Always: a new session whose process group is SIGKILLed afterwards; rlimits on CPU seconds, address space,
file size, core files and processes; a scrubbed environment (PATH, LANG, PYTHONHASHSEED, HOME); output
capped at `OUTPUT_CAP` bytes per stream.

Isolated (Linux with namespaces: as root, or with unprivileged user namespaces; `isolation()` says which):
a new pid, mount, network, IPC and UTS namespace per run; every host mount read-only; private size-bounded
tmpfs for /tmp, /var/tmp and /dev/shm; no network at all; a /proc showing only the sandbox; no capabilities;
as root, a random unprivileged uid so that the process limit applies. A program that escapes the process
group with setsid() still dies with the namespace. See `_launcher.py` for the construction.

Memory: RLIMIT_AS per process; as root, also a memory cgroup per run for all its processes together
(`group_memory_bytes`; `SandboxRun.oom_killed` says when the kernel enforced it), and oom_score_adj 1000 so
the host's OOM killer takes sandboxed processes before anything else.

`isolate=None` (the default) isolates when `isolation()` finds it works and otherwise falls back to the
session + rlimits sandbox with one warning; `isolate=True` raises `SandboxUnavailable` instead of falling back.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import select
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_launcher.py")
OUTPUT_CAP = 4 * 1024 * 1024  # bytes of stdout/stderr kept per run; the rest is drained and dropped
FILE_CAP = 16 * 1024 * 1024  # RLIMIT_FSIZE: the largest file a program may write
NPROC = 64  # RLIMIT_NPROC: processes and threads of the sandbox uid
TMPFS_MB = 64  # the private /tmp, which holds the program's working folder
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class SandboxRun:
    returncode: int | None  # None when killed for the wall-clock timeout
    stdout: str
    stderr: str
    time_s: float
    isolated: bool
    oom_killed: bool = False  # the kernel killed a process for the memory cgroup's limit (all processes together)


@functools.cache
def _exposed_paths() -> list[str]:
    """The interpreter's folders, which the sandbox uid must be able to read (the stdlib, site-packages)."""
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    real = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    return [p for p in real if not any(p.startswith(q + os.sep) for q in real if q != p)]  # outermost only


@functools.cache
def _site_paths() -> list[str]:
    return sorted(p for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} if os.path.isdir(p))


def _launcher_argv(argv: list[str], timeout_s: float, memory_mb: int, isolate: bool, userns: bool = False,
                   cgroup: str | None = None) -> list[str]:
    root = os.geteuid() == 0 and not userns
    cfg = {
        "isolate": isolate,
        "userns": userns,
        "cpu": math.ceil(timeout_s) + 1,
        "mem": memory_mb * 1024 * 1024,
        "fsize": FILE_CAP,
        "nproc": NPROC,
        "tmpfs_mb": TMPFS_MB,
        # A fresh unprivileged uid per run: owns nothing, shares its process count with nobody.
        "uid": random.SystemRandom().randrange(1 << 20, (1 << 31) - 1) if isolate and root else None,
        "expose": _exposed_paths() if isolate and root else [],
        "cgroup": cgroup,
    }
    return [sys.executable, "-I", "-S", LAUNCHER, json.dumps(cfg), *argv]


def _drain(stream, sink: list[bytes]) -> None:
    kept = 0
    while chunk := stream.read(65536):
        if kept < OUTPUT_CAP:
            sink.append(chunk[: OUTPUT_CAP - kept])
            kept += len(sink[-1])
    stream.close()


def _feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
    except (BrokenPipeError, OSError):
        pass
    try:
        stream.close()
    except OSError:
        pass


def _decode(parts: list[bytes]) -> str:
    return b"".join(parts).decode("utf-8", errors="replace")


# ---------------------------------------------------------------- memory cgroup (root, best effort)
# RLIMIT_AS bounds each process, not their sum: 64 forks of 1 GB each would still be 64 GB. As root, each run
# also gets a memory cgroup of its own, capped at group_memory_bytes(memory_mb), which the launcher joins first.
# Joining costs an RCU grace period, which concurrent runs serialise on (~20% of throughput with 2 workers);
# SKY_JUDGE_MEMORY_CGROUP=0 turns it off where the programs are trusted not to fork-and-allocate.


def group_memory_bytes(memory_mb: int) -> int:
    """Bytes for all of a run's processes and its tmpfs together: the program's limit twice, plus the tmpfs."""
    return (2 * memory_mb + TMPFS_MB + 32 + 64) * 1024 * 1024


@functools.cache
def _memory_cgroup_base() -> tuple[str, str] | None:
    """The folder under which this process may make memory cgroups, and the cgroup version; None if none."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidates.append((f"/sys/fs/cgroup/memory{path}", "v1"))
        if controllers == "":
            candidates.append((f"/sys/fs/cgroup{path}", "v2"))
    for base, version in candidates:
        limit = "memory.limit_in_bytes" if version == "v1" else "memory.max"
        probe = os.path.join(base, f"sky_judge_probe_{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        ok = os.path.exists(os.path.join(probe, limit))
        os.rmdir(probe)
        if ok:
            return base, version
    return None


def _make_cgroup(limit_bytes: int) -> str | None:
    base = _memory_cgroup_base()
    if base is None or os.environ.get("SKY_JUDGE_MEMORY_CGROUP", "1") == "0":
        return None
    path = os.path.join(base[0], f"sky_judge_{os.urandom(6).hex()}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "memory.limit_in_bytes" if base[1] == "v1" else "memory.max"), "w") as f:
            f.write(str(limit_bytes))
        if base[1] == "v1":  # no swapping around the limit, where the kernel offers the knob
            with contextlib.suppress(OSError), open(os.path.join(path, "memory.swappiness"), "w") as f:
                f.write("0")
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return path


def _remove_cgroup(path: str) -> bool:
    """Remove the run's cgroup once its processes are gone; True when the kernel OOM-killed one of them."""
    events = "memory.oom_control" if _memory_cgroup_base()[1] == "v1" else "memory.events"
    oom = False
    with contextlib.suppress(OSError), open(os.path.join(path, events)) as f:
        oom = any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0 for line in f if line.strip())
    for _ in range(300):  # processes of a killed run exit within milliseconds; wait up to 3 s
        try:
            os.rmdir(path)
            break
        except OSError:
            time.sleep(0.01)
    return oom


def _wait(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """The exit status, or None after `timeout_s`. Popen.wait(timeout) polls with sleeps of up to 50 ms, a
    large share of a 40 ms run; a pidfd (Linux >= 5.3) wakes exactly when the process ends."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout_s * 1000))):
            return None
        return proc.wait()
    finally:
        os.close(fd)


def _run(files: dict[str, str], argv: list[str], stdin: str, timeout_s: float, memory_mb: int, isolate: bool,
         userns: bool = False) -> SandboxRun:
    tmp = tempfile.mkdtemp(prefix="sky_judge_")
    cgroup = _make_cgroup(group_memory_bytes(memory_mb))
    try:
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        env = {**ENV, "HOME": tmp, "SKY_SITE": json.dumps(_site_paths())}  # the launcher pops SKY_SITE
        start = time.monotonic()
        proc = subprocess.Popen(
            _launcher_argv(argv, timeout_s, memory_mb, isolate, userns, cgroup), cwd=tmp, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        out: list[bytes] = []
        err: list[bytes] = []
        threads = [threading.Thread(target=_feed, args=(proc.stdin, stdin.encode("utf-8")), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
        for t in threads:
            t.start()
        if cgroup:  # attaching waits out an RCU grace period (~10-30 ms): done here, while the launcher starts up
            with contextlib.suppress(OSError), open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(proc.pid))
        rc = _wait(proc, timeout_s)
        # Kill the whole group either way: children left behind by a finished program die with it. Isolated,
        # the launcher's death also takes the sandbox's init (PDEATHSIG), and with it the whole pid namespace.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        elapsed = time.monotonic() - start
        for t in threads:
            t.join(timeout=2.0)
        oom = _remove_cgroup(cgroup) if cgroup else False
        cgroup = None
        return SandboxRun(rc, _decode(out), _decode(err), elapsed, isolate, oom)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if cgroup:  # an exception before the run finished
            _remove_cgroup(cgroup)


@functools.cache
def isolation() -> str | None:
    """Why the isolated sandbox cannot be used here, or None when it works (probed once per process by running
    a program that must see itself as pid 2 with no network)."""
    if not sys.platform.startswith("linux"):
        return f"namespaces need Linux (this is {sys.platform})"
    probe = ("import errno, os, socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
             "    net = 'up'\nexcept OSError as e:\n    net = errno.errorcode.get(e.errno, 'up')\n"
             "print(os.getpid(), net)\n")
    run = _run({"probe.py": probe}, ["probe.py"], "", 20.0, 1024, isolate=True)
    if run.returncode == 0 and run.stdout.split() == ["2", "ENETUNREACH"]:
        return None
    last = run.stderr.strip().splitlines()[-1:] or [f"exit code {run.returncode}, output {run.stdout.strip()!r}"]
    return last[0][:200]


def run_sandboxed(files: dict[str, str], argv: list[str], stdin: str, timeout_s: float, memory_mb: int,
                  isolate: bool | None = None) -> SandboxRun:
    """Write `files` into a fresh temp dir, run `python -I *argv` there under the limits, remove the dir.
    `argv[0]` names the script (one of `files`); the rest are its arguments."""
    if isolate is None or isolate:
        why = isolation()
        if why is not None and isolate:
            raise SandboxUnavailable(f"isolated sandbox unavailable: {why}")
        if why is not None:
            _warn_once(why)
        isolate = why is None
    return _run(files, argv, stdin, timeout_s, memory_mb, isolate)


@functools.cache
def _warn_once(why: str) -> None:
    warnings.warn(f"code judge: no namespace isolation ({why}); programs run with rlimits and a new session only",
                  RuntimeWarning, stacklevel=3)
