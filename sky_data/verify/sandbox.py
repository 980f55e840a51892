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

`isolate=None` (the default) isolates when `isolation()` finds it works and otherwise falls back to the
session + rlimits sandbox with one warning; `isolate=True` raises `SandboxUnavailable` instead of falling back.
"""

from __future__ import annotations

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


def _exposed_paths() -> list[str]:
    """The interpreter's folders, which the sandbox uid must be able to read (the stdlib, site-packages)."""
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    real = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    return [p for p in real if not any(p.startswith(q + os.sep) for q in real if q != p)]  # outermost only


@functools.cache
def _site_paths() -> list[str]:
    return [p for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} if os.path.isdir(p)]


def _launcher_argv(argv: list[str], timeout_s: float, memory_mb: int, isolate: bool, userns: bool = False) -> list[str]:
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
    try:
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        env = {**ENV, "HOME": tmp, "SKY_SITE": json.dumps(_site_paths())}  # the launcher pops SKY_SITE
        start = time.monotonic()
        proc = subprocess.Popen(
            _launcher_argv(argv, timeout_s, memory_mb, isolate, userns), cwd=tmp, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        out: list[bytes] = []
        err: list[bytes] = []
        threads = [threading.Thread(target=_feed, args=(proc.stdin, stdin.encode("utf-8")), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
        for t in threads:
            t.start()
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
        return SandboxRun(rc, _decode(out), _decode(err), elapsed, isolate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
