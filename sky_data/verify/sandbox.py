"""Run an untrusted Python program once, jailed: `run_sandboxed(files, argv, stdin, timeout_s, memory_mb)`.

The program runs in a warm interpreter forked per run by a fork server (`_launcher.py`, the "zygote"), which
saves the ~30 ms of a Python start-up per test. Each run gets:
- its own pid, mount and IPC namespaces, a random unprivileged uid (as root), no capabilities, no new
  privileges; everything it starts dies with it, `setsid()` escapees included;
- a root filesystem holding only the interpreter, its standard library and shared libraries, the packages
  in `PACKAGES` (numpy, sortedcontainers, where installed), `/dev/null` and friends, its own `/proc`, and a
  fresh size-bounded tmpfs on `/tmp` with its files in `/tmp/sandbox`. Every mount is read-only but /tmp
  and /proc. Benchmark files, the judge's checkout, host sockets and home folders are not there at all;
- no network (a namespace whose loopback is down);
- rlimits: CPU seconds, address space (`memory_mb` per process), 16 MB files, 64 processes, no core files;
- as root, the cgroups of its zygote's slot: memory for all of the run's processes together
  (`group_memory_bytes`; an OOM kill is reported), and at most one CPU (`cpu` quota), so that no run can
  starve the runs judged beside it;
- a scrubbed environment (PATH, LANG, PYTHONHASHSEED=0, HOME), and output capped at `OUTPUT_CAP` per stream.

Time: with the CPU cgroup (root), `timeout_s` counts the CPU time of all of the run's processes together,
and a run may take up to `WALL_FACTOR * timeout_s + 1` seconds of wall-clock time (a program that sleeps).
Without it (not root), `timeout_s` is wall-clock time, and RLIMIT_CPU bounds each process.

Records: the judge's drivers (in `_launcher.py`) report compile errors, call results and "the check ran to
its end" on a pipe of their own, tagged with a per-run nonce; `SandboxRun.record` is that record, and a
program's own output can never be taken for it.

`isolate=True` (the default) raises `SandboxUnavailable` where namespaces cannot be made (`isolation()`
says why). `isolate=False` is the named opt-in to judging WITHOUT a sandbox (rlimits and a new session
only: the program can read and write whatever the judge can), for trusted code or machines without
namespaces; it warns once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

from sky_data.verify import cgroups
from sky_data.verify.cgroups import TMPFS_MB, group_memory_bytes
from sky_data.verify.rootfs import PACKAGES, root_plan, tmp_plan  # noqa: F401  (PACKAGES: re-exported)

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_launcher.py")
OUTPUT_CAP = 4 * 1024 * 1024  # bytes kept per stream (stdout, stderr, records); the rest is drained and dropped
FILE_CAP = 16 * 1024 * 1024  # RLIMIT_FSIZE: the largest file a program may write
NPROC = 64  # RLIMIT_NPROC: processes and threads of the run's uid
WALL_FACTOR = 3.0  # with CPU-time limits: the wall-clock limit is WALL_FACTOR * timeout_s + 1 s
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
ZYGOTE_MEMORY_MB = 64  # headroom in a slot's memory cgroup for the zygote itself
MODES = ("script", "program", "call")


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class SandboxRun:
    returncode: int | None  # None when killed for its time limit; -N: killed by signal N
    stdout: str
    stderr: str
    time_s: float  # wall clock
    isolated: bool
    oom_killed: bool = False  # the kernel killed a process for the slot's memory limit (all processes together)
    cpu_s: float | None = None  # CPU time of all of the run's processes, where a cgroup counts it
    limit: str = ""  # which limit killed it: "cpu" or "wall"; "" when it ended by itself
    record: dict | None = None  # the driver's record (see `_launcher.py`), None when it wrote none
    record_error: str = ""  # why a record that was written could not be read
    error: str = ""  # the sandbox itself failed (not the program): why


# ---------------------------------------------------------------- the fork server


class _ZygoteDied(RuntimeError):
    pass


class _Zygote:
    """One warm interpreter serving runs one at a time (see `_launcher.serve`), with its cgroup slot."""

    def __init__(self, userns: bool) -> None:
        ops, sys_path = root_plan()
        self.userns = userns
        self.root_route = os.geteuid() == 0 and not userns
        self.sys_path = sys_path
        zcfg = {"plan": ops, "tmp_plan": tmp_plan(ops), "userns": userns, "tmpfs_mb": TMPFS_MB}
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-s", "-S", LAUNCHER, "serve", json.dumps(zcfg), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=dict(ENV), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True, cwd="/",
            )
        except OSError as e:
            self.sock.close()
            raise SandboxUnavailable(f"the sandbox's fork server did not start: {e}") from None
        finally:
            theirs.close()
        # Its cgroup slot, joined before it forks anything. Without one (not root, no writable cgroup fs, or a
        # failure here) runs are still isolated, but timed by the wall clock, with per-process memory limits.
        self.slot = None
        if self.root_route and cgroups.bases():
            try:
                self.slot = cgroups.Slot()
                self.slot.join(self.proc.pid)
            except OSError as e:
                warnings.warn(f"code judge: no cgroup slot ({e}); runs are timed by the wall clock", RuntimeWarning,
                              stacklevel=2)
                if self.slot is not None:
                    self.slot.remove()
                self.slot = None
        try:
            self.sock.settimeout(60.0)
            hello = self.sock.recv(4096)
        except (OSError, TimeoutError) as e:
            self.close()
            raise SandboxUnavailable(f"the sandbox's fork server did not start: {e}") from None
        if hello != b"ready":
            err = self.proc.stderr.read(4000).decode(errors="replace").strip().splitlines()[-1:] if not hello else []
            self.close()
            why = hello.decode(errors="replace") or (err[0] if err else "exited at start-up")
            raise SandboxUnavailable(f"the sandbox's fork server did not start: {why}")
        self.proc.stderr.close()
        self.sock.settimeout(None)

    def start(self, fds: list[int]) -> int:
        """Hand the run's six fds to the zygote; returns a pidfd of the run's launcher."""
        try:
            socket.send_fds(self.sock, [b"run"], fds)
            msg, got, _, _ = socket.recv_fds(self.sock, 16, 1)
        except OSError as e:
            raise _ZygoteDied(str(e)) from None
        if msg != b"ok" or len(got) != 1:
            for fd in got:
                os.close(fd)
            raise _ZygoteDied(f"the fork server answered {msg!r}")
        return got[0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()
        if self.slot is not None:
            self.slot.remove()


class _Pool:
    """Zygotes for one route (root or user namespace), started on demand; a thread borrows one per run."""

    def __init__(self, userns: bool) -> None:
        self.userns = userns
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: list[_Zygote] = []
        self._all: set[_Zygote] = set()

    @contextlib.contextmanager
    def borrow(self):
        with self._lock:
            z = self._idle.pop() if self._idle else None
        if z is None:
            z = _Zygote(self.userns)
            with self._lock:
                self._all.add(z)
        ok = False
        try:
            yield z
            ok = True
        finally:
            if ok and z.alive():
                with self._lock:
                    self._idle.append(z)
            else:
                with self._lock:
                    self._all.discard(z)
                z.close()

    def close(self) -> None:
        if os.getpid() != self.pid:  # a forked child must not kill its parent's zygotes
            return
        with self._lock:
            zs, self._all, self._idle = list(self._all), set(), []
        for z in zs:
            z.close()


_POOLS: dict[bool, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(userns: bool) -> _Pool:
    with _POOLS_LOCK:
        p = _POOLS.get(userns)
        if p is None or p.pid != os.getpid():
            p = _POOLS[userns] = _Pool(userns)
            import atexit

            atexit.register(p.close)
        return p


# ---------------------------------------------------------------- one run


def _pipes(n: int) -> tuple[list[int], list[int]]:
    """`n` pipes between the judge and a run, in the order request, stdin, stdout, stderr, record[, status]:
    the run reads the first two and writes the rest. Returns (the run's ends, the judge's ends)."""
    pairs = [os.pipe2(os.O_CLOEXEC) for _ in range(n)]
    theirs = [r if k < 2 else w for k, (r, w) in enumerate(pairs)]
    ours = [w if k < 2 else r for k, (r, w) in enumerate(pairs)]
    return theirs, ours


def _communicate(exit_fd: int, feeds: dict[int, bytes], sinks: list[int], timeout_s: float, wall_s: float,
                 cpu_ns=None, on_exit=None) -> tuple[dict[int, bytes], str, float | None]:
    """Feed `feeds` and drain `sinks` (each capped at OUTPUT_CAP) until `exit_fd` (a pidfd) says the run's
    first process ended (then `on_exit()` is called) and the sinks are closed. Past the limits the caller's
    kill is due: returns early with the limit's name. Returns (bytes per sink, "" | "cpu" | "wall", CPU
    seconds when counted)."""
    poller = select.poll()
    for fd in feeds:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLOUT)
    for fd in sinks:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    poller.register(exit_fd, select.POLLIN)
    bufs = {fd: bytearray() for fd in sinks}
    sent = dict.fromkeys(feeds, 0)
    open_sinks = set(sinks)
    start = time.monotonic()
    cpu0 = cpu_ns() if cpu_ns else 0
    used = 0.0
    exited_at = None
    limit = ""
    while True:
        now = time.monotonic()
        if exited_at is not None:
            if not open_sinks or now - exited_at > 2.0:  # whatever still holds a pipe is gone with the run
                break
            wait = exited_at + 2.0 - now
        else:
            if cpu_ns:
                used = (cpu_ns() - cpu0) / 1e9
            if cpu_ns and used >= timeout_s:
                limit = "cpu"
            elif now - start >= (wall_s if cpu_ns else timeout_s):
                limit = "wall"
            if limit:
                break
            # CPU time grows at most one second per second under the slot's one-CPU quota, so the next look
            # at the counter is due when the wall clock has advanced by the CPU budget that is left.
            wait = min(start + (wall_s if cpu_ns else timeout_s) - now, max(0.005, timeout_s - used))
        for fd, ev in poller.poll(max(1, int(wait * 1000))):
            if fd == exit_fd:
                exited_at = time.monotonic()
                poller.unregister(exit_fd)
                if on_exit is not None:
                    on_exit()
            elif fd in sent:
                data = feeds[fd]
                try:  # POLLERR: the reader is gone, the rest is not wanted
                    n = len(data) if ev & select.POLLERR else os.write(fd, data[sent[fd] : sent[fd] + 65536])
                    sent[fd] += n
                except OSError:
                    sent[fd] = len(data)
                if sent[fd] >= len(data):
                    poller.unregister(fd)
                    os.close(fd)
                    del sent[fd]
            elif fd in open_sinks:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    room = OUTPUT_CAP - len(bufs[fd])
                    if room > 0:
                        bufs[fd] += chunk[:room]
                else:
                    poller.unregister(fd)
                    open_sinks.discard(fd)
    for fd in list(sent) + list(open_sinks):
        with contextlib.suppress(OSError):
            poller.unregister(fd)
    for fd in sent:
        os.close(fd)
    if cpu_ns:
        used = (cpu_ns() - cpu0) / 1e9
    return {fd: bytes(b) for fd, b in bufs.items()}, limit, (used if cpu_ns else None)


def _drain_after_kill(exit_fd: int, sinks: list[int], bufs: dict[int, bytes]) -> dict[int, bytes]:
    """After a kill: wait for the launcher to go and read what is left in the sinks."""
    more, _, _ = _communicate(exit_fd, {}, list(sinks), 3600.0, 3600.0)
    return {fd: (bufs.get(fd, b"") + more.get(fd, b""))[:OUTPUT_CAP] for fd in sinks}


def _parse_record(data: bytes, nonce: str) -> tuple[dict | None, str]:
    """The driver's record, found by its nonce: `NONCE LENGTH\\n` then LENGTH bytes of JSON."""
    at = data.find(nonce.encode() + b" ")
    if at < 0:
        return None, ""
    header_end = data.find(b"\n", at)
    try:
        length = int(data[at + len(nonce) + 1 : header_end])
    except ValueError:
        return None, "malformed record"
    payload = data[header_end + 1 : header_end + 1 + length]
    if header_end < 0 or len(payload) < length:
        return None, f"the result is larger than the {OUTPUT_CAP // (1 << 20)} MB output cap"
    try:
        record = json.loads(payload)
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, or an integer of over 4300 digits
        return None, f"unreadable result ({type(e).__name__}: {str(e)[:100]})"
    return (record, "") if isinstance(record, dict) else (None, "malformed record")


def _request(files: dict[str, str], argv: list[str], timeout_s: float, memory_mb: int, mode: str,
             fn_name: str | None, uid: int | None, sys_path: list[str], nonce: str) -> bytes:
    cfg = {"argv": argv, "mode": mode, "fn_name": fn_name, "uid": uid, "env": ENV, "sys_path": sys_path,
           "wall": math.ceil(WALL_FACTOR * timeout_s + 1), "cpu": math.ceil(timeout_s) + 1,
           "mem": memory_mb * 1024 * 1024, "fsize": FILE_CAP, "nproc": NPROC}
    return json.dumps({"cfg": cfg, "files": files, "nonce": nonce}).encode()


def _run_isolated(files, argv, stdin, timeout_s, memory_mb, mode, fn_name, userns: bool) -> SandboxRun:
    with _pool(userns).borrow() as z:
        nonce = secrets.token_hex(16)
        uid = random.SystemRandom().randrange(1 << 20, (1 << 31) - 1) if z.root_route else None
        request = _request(files, argv, timeout_s, memory_mb, mode, fn_name, uid, z.sys_path, nonce)
        if z.slot is not None:
            z.slot.set_memory(group_memory_bytes(memory_mb) + ZYGOTE_MEMORY_MB * 1024 * 1024)
        ooms = z.slot.oom_kills() if z.slot is not None else 0
        cpu_ns = z.slot.cpu_ns if z.slot is not None and z.slot.counts_cpu else None
        theirs, ours = _pipes(6)  # request, stdin, stdout, stderr, record, status
        start = time.monotonic()
        try:
            pidfd = z.start(theirs)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        sinks = ours[2:]
        try:
            wall = WALL_FACTOR * timeout_s + 1.0
            feeds = {ours[0]: request, ours[1]: stdin.encode("utf-8", "surrogatepass")}
            bufs, limit, cpu_s = _communicate(pidfd, feeds, sinks, timeout_s, wall, cpu_ns)
            if limit:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                bufs = _drain_after_kill(pidfd, sinks, bufs)
        finally:
            os.close(pidfd)
            for fd in sinks:
                os.close(fd)
        elapsed = time.monotonic() - start
        oom = z.slot is not None and z.slot.oom_kills() > ooms
    out, err, rec, status = (bufs[fd] for fd in sinks)
    status_text = status.decode(errors="replace")
    run = SandboxRun(None, _decode(out), _decode(err), elapsed, True, oom, cpu_s, limit)
    if not limit:
        if status_text.startswith("status "):
            run.returncode = os.waitstatus_to_exitcode(int(status_text.split()[1]))
        elif status_text.startswith("sandbox: "):
            run.returncode, run.error = 125, status_text
        else:  # init died without a word: killed from outside (the OOM killer, say)
            run.returncode = -signal.SIGKILL
    run.record, run.record_error = _parse_record(rec, nonce)
    if run.record and "sandbox_error" in run.record:
        run.error = f"sandbox: {run.record['sandbox_error']}"[:300]
    return run


def _run_unsandboxed(files, argv, stdin, timeout_s, memory_mb, mode, fn_name) -> SandboxRun:
    """The opt-in mode without namespaces: `_launcher.py once` in a fresh temp folder, rlimits, a session."""
    tmp = tempfile.mkdtemp(prefix="sky_judge_")
    nonce = secrets.token_hex(16)
    request = _request(files, argv, timeout_s, memory_mb, mode, fn_name, None, root_plan()[1], nonce)
    theirs, ours = _pipes(5)  # request, stdin, stdout, stderr, record
    try:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-s", "-S", LAUNCHER, "once", str(theirs[0]), str(theirs[4])], cwd=tmp,
                env={**ENV, "HOME": tmp}, stdin=theirs[1], stdout=theirs[2], stderr=theirs[3],
                pass_fds=(theirs[0], theirs[4]), start_new_session=True,
            )
        finally:
            for fd in theirs:
                os.close(fd)
        exit_fd = _exit_fd(proc.pid)
        sinks = ours[2:]

        def kill_session() -> None:
            # The whole session goes, finished or not: children left behind die with it. The launcher is not
            # reaped yet, so its pid (the group's id) cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        try:
            feeds = {ours[0]: request, ours[1]: stdin.encode("utf-8", "surrogatepass")}
            bufs, limit, _ = _communicate(exit_fd, feeds, sinks, timeout_s, timeout_s, on_exit=kill_session)
            if limit:
                kill_session()
                bufs = _drain_after_kill(exit_fd, sinks, bufs)
            proc.wait()
        finally:
            os.close(exit_fd)
            for fd in sinks:
                os.close(fd)
        elapsed = time.monotonic() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out, err, rec = (bufs[fd] for fd in sinks)
    run = SandboxRun(None if limit else proc.returncode, _decode(out), _decode(err), elapsed, False, limit=limit)
    run.record, run.record_error = _parse_record(rec, nonce)
    return run


def _exit_fd(pid: int) -> int:
    """An fd that becomes readable when child `pid` exits, without reaping it: a pidfd (Linux >= 5.3), else a
    pipe closed by a thread that waits with WNOWAIT."""
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    r, w = os.pipe()

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        os.close(w)

    threading.Thread(target=wait, daemon=True).start()
    return r


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _run(files: dict[str, str], argv: list[str], stdin: str, timeout_s: float, memory_mb: int, isolate: bool,
         userns: bool = False, mode: str = "script", fn_name: str | None = None) -> SandboxRun:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isolate:
        return _run_unsandboxed(files, argv, stdin, timeout_s, memory_mb, mode, fn_name)
    userns = userns or os.geteuid() != 0
    for attempt in range(2):
        try:
            return _run_isolated(files, argv, stdin, timeout_s, memory_mb, mode, fn_name, userns)
        except _ZygoteDied:
            if attempt:
                raise SandboxUnavailable("the sandbox's fork server died twice in a row") from None
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- public API


@functools.cache
def isolation() -> str | None:
    """Why the isolated sandbox cannot be used here, or None when it works (probed once per process by running
    a program that must see itself as pid 2, with no network and no host files)."""
    if not sys.platform.startswith("linux"):
        return f"namespaces need Linux (this is {sys.platform})"
    if not hasattr(os, "pidfd_open"):
        return "the sandbox needs os.pidfd_open (Linux >= 5.3, Python >= 3.9)"
    probe = ("import errno, os, socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
             "    net = 'up'\nexcept OSError as e:\n    net = errno.errorcode.get(e.errno, 'up')\n"
             "print(os.getpid(), net, os.path.exists('/etc/passwd'))\n")
    try:
        run = _run({"probe.py": probe}, ["probe.py"], "", 20.0, 1024, isolate=True)
    except SandboxUnavailable as e:
        return str(e)[:300]
    if run.returncode == 0 and run.stdout.split() == ["2", "ENETUNREACH", "False"]:
        return None
    last = (run.error or run.stderr).strip().splitlines()[-1:]
    last = last or [f"exit code {run.returncode}, output {run.stdout.strip()!r}"]
    return last[0][:300]


def run_sandboxed(files: dict[str, str], argv: list[str], stdin: str, timeout_s: float, memory_mb: int,
                  isolate: bool = True, mode: str = "script", fn_name: str | None = None) -> SandboxRun:
    """Run `argv[0]` (one of `files`) with arguments `argv[1:]` in a fresh sandbox, feeding it `stdin`.

    `mode`: "script" runs it as `python main.py` would; "program" also records whether it ran to its end
    without an exception or exit (a self-checking program); "call" executes it as a module, then calls the
    function or `Solution` method `fn_name` on the JSON list of arguments read from stdin and records the
    result. `isolate=False` runs it WITHOUT namespaces (see the module's docstring)."""
    if isolate:
        why = isolation()
        if why is not None:
            raise SandboxUnavailable(f"isolated sandbox unavailable: {why} (pass isolate=False to judge without a "
                                     "sandbox, only for code you trust)")
    else:
        _warn_unsandboxed()
    return _run(files, argv, stdin, timeout_s, memory_mb, isolate, mode=mode, fn_name=fn_name)


@functools.cache
def _warn_unsandboxed() -> None:
    warnings.warn("code judge: isolate=False, programs run WITHOUT a sandbox (rlimits and a new session only)",
                  RuntimeWarning, stacklevel=3)
