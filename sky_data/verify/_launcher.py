"""The inside of the sandbox: a warm interpreter that forks one jailed run per request (`serve`), or a one-shot
run without namespaces (`once`). Started by `sandbox.py`, never imported by it; standard library only, and it
imports nothing from sky_data, because it is the judged program's interpreter.

    python -s -S _launcher.py serve ZYGOTE_CONFIG_JSON SOCKET_FD
    python -s -S _launcher.py once REQUEST_FD RECORD_FD

The fork server ("zygote") builds, once, a root filesystem that holds only what a judged program needs (the
interpreter, its standard library, its shared libraries, the allowed packages, /dev/null and friends, a /proc
mount point) and pivots into it, in new mount, network and UTS namespaces (and a user namespace when not root).
For each request it forks:

    zygote (host pid namespace; its own minimal root; in the run slot's cgroups)
    └─ launcher (one per run; new session): reads the request, unshares mount, pid and IPC namespaces, mounts
       a fresh tmpfs on /tmp with the program's files in /tmp/sandbox
         └─ init (pid 1 of the run's pid namespace; dies with the launcher through PR_SET_PDEATHSIG): mounts
            the run's /proc, forks the program, reaps, writes the program's wait status on the status pipe
              └─ program (pid 2): rlimits, the run's unprivileged uid, no capabilities, no new privileges;
                 runs the request in this interpreter (no second interpreter start-up)

Why each piece:
- pid namespace: when init exits, the kernel kills everything left in it, setsid() escapees included. The
  judge kills a run by killing its launcher; a launcher whose judge is gone ends itself (an alarm at the
  run's wall-clock limit).
- minimal root: no host file is visible that the program does not need, so benchmark files, the judge's
  checkout and the host's unix sockets are out of reach. Every mount is read-only but /tmp and /proc.
- network namespace (per zygote, whose runs follow one another): loopback only, and down.
- uid: as root, a random uid in [2^20, 2^31) per run owns nothing and is shared with no other run, so
  RLIMIT_NPROC counts this run's processes only.
- IPC namespace per run: System V objects a program leaves behind die with its run.
- the request (files, configuration, nonce) travels on a pipe that only the launcher reads, after the fork:
  the zygote never holds a program or its tests, so no later run can find them in memory it inherits.
- the program's process ends with `_exit` (threads joined, atexit handlers run, stdout flushed), skipping the
  teardown of the zygote's modules, which would cost more than the run.

What a run reports, on pipes the judge reads: stdout, stderr, the program's wait status (from init), and
records (from this file's drivers, never from the program's own output): a driver writes
`NONCE <length>\\n<json>` on the record pipe, and the nonce comes with the request, so a program cannot
forge a record without reading this interpreter's memory.
"""

import os
import sys

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # started without -I (so PYTHONHASHSEED applies): never import this folder's math.py

import ctypes  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import types  # noqa: E402

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
M_ARENA_MAX = -8
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}
SANDBOX_DIR = "/tmp/sandbox"
RECORD_FD, STATUS_FD = 3, 4  # in a run: the driver's record pipe and init's status pipe

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _enc(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    _check(_libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


# ---------------------------------------------------------------- the zygote's root filesystem


def _apply(plan: list, root: str, sources: dict[str, int]) -> None:
    """Carry out `plan` under `root`: make folders and symlinks, bind host paths (from their O_PATH fds in
    `sources`) read-only, mount empty tmpfs over folders to hide (made read-only by a later "ro" step)."""
    for op in plan:
        kind, path, arg = op[0], root + op[1], op[2] if len(op) > 2 else None
        if kind == "dir":
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "symlink":
            if not os.path.lexists(path):
                os.symlink(arg, path)
        elif kind == "tmpfs":
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        elif kind == "bind":  # arg: "dir", "file", "dev" or "proc"
            if not os.path.lexists(path):
                if arg in ("file", "dev"):
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                else:
                    os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{sources[op[1]]}", path, None, MS_BIND | MS_REC)
            if arg != "proc":
                ro = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (0 if arg == "dev" else MS_NODEV)
                _mount(None, path, None, ro)
        elif kind == "ro":
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        else:
            raise ValueError(f"unknown plan step {op!r}")


def _build_root(plan: list, userns: bool) -> None:
    """New mount, network and UTS namespaces (and a user namespace when `userns`), then a tmpfs root made
    from `plan` (see `rootfs.root_plan`), pivoted into. The host's filesystem is gone from this process."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | (CLONE_NEWUSER if userns else 0)
    _check(_libc.unshare(flags), "unshare")
    if userns:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    # Sources are opened before the new root hides anything (a venv under /tmp, say); binds use their fds.
    sources = {op[1]: os.open(op[1], os.O_PATH | os.O_CLOEXEC) for op in plan if op[0] == "bind"}
    new = "/tmp"
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    _apply(plan, new, sources)
    for fd in sources.values():
        os.close(fd)
    os.mkdir(new + "/.old")
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], new.encode(), (new + "/.old").encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# ---------------------------------------------------------------- one run: launcher, init, program


def _launch(fds: list[int], zcfg: dict) -> None:
    """In the launcher, forked by the zygote: read the request, build the run's namespaces, start
    init. Never returns: the launcher exits when init does; the program's process by `_exit`."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it to auto-reap; runs must not
    req_fd, stdin, stdout, stderr, record, status = _place(fds, [None, 0, 1, 2, RECORD_FD, STATUS_FD])
    req = json.loads(_read_all(req_fd))
    os.closerange(STATUS_FD + 1, 1 << 16)  # the control socket, the request pipe, everything of the zygote's
    signal.alarm(req["cfg"]["wall"] + 5)  # if the judge is gone, nobody kills this run: it ends itself
    try:
        _write("/proc/self/oom_score_adj", "1000")  # the host's OOM killer takes sandboxed processes first
    except OSError:
        pass
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
        _make_tmp(zcfg, req)
    except OSError as e:
        _report(f"sandbox: {e}")
        os._exit(125)
    if os.fork() == 0:
        _init(req)
    for fd in range(5):
        os.close(fd)
    while True:
        try:
            os.waitpid(-1, 0)  # init is the only child; when it is gone, so is every process of the run
        except ChildProcessError:
            os._exit(0)


def _place(fds: list[int], targets: list) -> list[int]:
    """dup2 each fd onto its target number (None: anywhere above them), safe when sources and targets overlap."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for fd in fds:
        if fd not in high:
            os.close(fd)
    out = []
    for fd, target in zip(high, targets):
        if target is None:
            out.append(fd)
        else:
            os.dup2(fd, target)  # the copy is inheritable; the high one closes on exec and with closerange
            out.append(target)
    return out


def _make_tmp(zcfg: dict, req: dict) -> None:
    """A fresh tmpfs on /tmp holding /tmp/sandbox and the program's files. The steps of the root's plan that
    lie under /tmp (a venv made there, say) are carried out again inside it, from the root's own binds."""
    ops = zcfg["tmp_plan"]
    keep = {op[1]: os.open(op[1], os.O_PATH | os.O_CLOEXEC) for op in ops if op[0] == "bind"}
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={zcfg['tmpfs_mb']}m,mode=1777")
    _apply(ops, "", keep)
    for fd in keep.values():
        os.close(fd)
    _write_files(SANDBOX_DIR, req)


def _write_files(folder: str, req: dict) -> None:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    uid = req["cfg"]["uid"]
    for name, text in req["files"].items():
        if os.sep in name or name in (".", ".."):
            raise OSError(22, f"bad file name {name!r}")
        with open(os.path.join(folder, name), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)  # a lone surrogate is the program's doing: its compile error, not the sandbox's
        if uid is not None:
            os.chown(os.path.join(folder, name), uid, uid)
    if uid is not None:
        os.chown(folder, uid, uid)


def _report(text: str) -> None:
    try:
        os.write(STATUS_FD, text.encode()[:4000])
    except OSError:
        pass


def _init(req: dict) -> None:
    """pid 1 of the run: its /proc, then the program as pid 2; report the program's wait status and exit,
    which kills whatever the program left behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Should the launcher die before the line above took effect, nobody would end this run: an alarm does.
    # (A pid namespace's init ignores signals it has no handler for, its own alarm's included.)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(1))
    signal.alarm(req["cfg"]["wall"] + 10)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as e:  # never run with the zygote's /proc, which shows the host's processes
        _report(f"sandbox: {e}")
        os._exit(125)
    child = os.fork()
    if child == 0:
        os.close(STATUS_FD)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        _program(req, SANDBOX_DIR, isolated=True)
    os.close(RECORD_FD)
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    _report(f"status {status}")
    os._exit(0)


# ---------------------------------------------------------------- the program's process


def _limit(cfg: dict, isolated: bool) -> None:
    """rlimits, then (isolated) no capabilities and the run's uid."""
    _libc.mallopt(M_ARENA_MAX, 2)  # glibc reserves 64 MB of address space per thread's arena otherwise
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu"], cfg["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["mem"], cfg["mem"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # applies to every uid but real root (kernel rule); the isolated route never runs as real root
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    except (ValueError, OSError):
        pass
    if isolated:
        for cap in range(64):  # an empty bounding set: no capabilities survive, even for uid 0 of a userns
            if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
                break
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])  # as root: also clears every capability
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        header = struct.pack("Ii", 0x20080522, 0)  # capset v3: empty effective, permitted, inheritable sets
        _check(_libc.capset(header, bytes(24)), "capset")


def _record(nonce: str, payload: dict) -> None:
    data = json.dumps(payload).encode()
    try:
        os.write(RECORD_FD, f"{nonce} {len(data)}\n".encode() + data)
    except OSError:
        pass


def _program(req: dict, folder: str, isolated: bool) -> None:
    """Become the judged program, run it, and exit as `python main.py` would (see `_exit`). Never returns."""
    cfg, nonce = req["cfg"], req["nonce"]
    del req["files"]
    try:
        _limit(cfg, isolated)
        os.chdir(folder)
    except OSError as e:  # the sandbox failed, not the program: the judge says so ("judge_error")
        _record(nonce, {"sandbox_error": f"{type(e).__name__}: {e}"})
        os._exit(125)
    os.environ.clear()
    os.environ.update(cfg["env"], HOME=folder)
    import _sitebuiltins
    import builtins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    sys.path.extend(p for p in cfg["sys_path"] if p not in sys.path)
    sys.argv = list(cfg["argv"])
    mode, script = cfg["mode"], cfg["argv"][0]
    try:
        with open(script, encoding="utf-8", errors="surrogateescape") as f:
            code = compile(f.read(), script, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as e:
        _record(nonce, {"compile_error": f"{type(e).__name__}: {e}"[:300]})
        _print_exception(e)
        _exit(1)
    if mode == "call":
        namespace = {"__name__": "__solution__", "__builtins__": builtins}
    else:
        main = types.ModuleType("__main__")
        main.__file__, main.__builtins__ = script, builtins
        sys.modules["__main__"] = main
        namespace = main.__dict__
    try:
        exec(code, namespace)
        if mode == "call":
            result = _call(namespace, cfg["fn_name"], json.loads(sys.stdin.read()))
            sys.stdout.flush()
            _record(nonce, {"result": result})
        elif mode == "program":
            sys.stdout.flush()
            _record(nonce, {"completed": True})  # the check ran to its end: no exit, no exception
    except SystemExit as e:
        _exit(_exit_code(e))
    except BaseException as e:  # noqa: BLE001  (reported as python reports it, without this file's frames)
        _print_exception(e)
        _exit(1)
    _exit(0)


def _exit_code(e: SystemExit) -> int:
    """What the interpreter makes of SystemExit's argument: None is 0, an int itself, anything else is printed
    and is 1."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    try:
        print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _exit(code: int) -> None:
    """The interpreter's shutdown as far as a program can see it (join non-daemon threads, run atexit
    handlers, flush stdout and stderr), then _exit: tearing down the zygote's modules one by one would cost
    more than the whole run (~13 ms)."""
    import atexit
    import threading

    try:
        threading._shutdown()
    except BaseException:  # noqa: BLE001
        pass
    try:
        atexit._run_exitfuncs()
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001  (python exits 120 when it cannot flush stdout)
            code = code or 120
    os._exit(code)


def _print_exception(e: BaseException) -> None:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # python's own report of `python main.py` starts at the program's frame
    try:
        sys.excepthook(type(e), e.with_traceback(tb), tb)  # the hook prints the exception's own traceback
    except BaseException:  # noqa: BLE001  (a hostile excepthook)
        pass


def _call(namespace: dict, name: str, args: list):
    """Call-based tests: a top-level function or a method of `class Solution`, on JSON arguments."""
    cls = namespace.get("Solution")
    if isinstance(cls, type) and hasattr(cls, name):
        fn = getattr(cls(), name)
    elif name in namespace:
        fn = namespace[name]
    else:
        raise NameError(f"no function or Solution method named {name!r}")
    return _plain(fn(*args))


def _plain(x):
    """The value as JSON data: tuples become lists, sets sorted lists, anything else its repr."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return sorted((_plain(v) for v in x), key=repr)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


# ---------------------------------------------------------------- entry points


def serve(zcfg: dict, sock: socket.socket) -> None:
    """The zygote: build the root once, then fork one launcher per request. A request is a message on the
    control socket carrying six fds (request, stdin, stdout, stderr, record, status); the reply carries a
    pidfd of the launcher, which the judge polls and kills. It exits when the judge closes the socket (or dies,
    which closes it)."""
    try:
        _write("/proc/self/oom_score_adj", "-1000" if os.geteuid() == 0 else "0")
    except OSError:
        pass
    try:
        _build_root(zcfg["plan"], zcfg["userns"])
    except OSError as e:
        sock.send(f"error: {e}".encode()[:2000])
        os._exit(1)
    import bisect, collections, functools, heapq, itertools, math, re, string, typing  # noqa: E401,F401  (warm)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # launchers are reaped by the kernel
    sock.send(b"ready")
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 16, 8)
        if not msg:
            os._exit(0)  # the judge closed the socket
        if len(fds) != 6:
            for fd in fds:
                os.close(fd)
            sock.send(b"bad request")
            continue
        pid = os.fork()
        if pid == 0:  # whatever happens in the run, this process never returns to the loop above
            try:
                sock.close()
                _launch(fds, zcfg)
            except BaseException as e:  # noqa: BLE001
                _report(f"sandbox: {type(e).__name__}: {e}")
            finally:
                os._exit(125)
        for fd in fds:
            os.close(fd)
        try:  # the launcher waits for its request, which the judge sends after this reply: it cannot be gone
            pidfd = os.pidfd_open(pid)
        except OSError:
            sock.send(b"launcher gone")
            continue
        socket.send_fds(sock, [b"ok"], [pidfd])
        os.close(pidfd)


def once() -> None:
    """One run without namespaces (the judge's opt-in unsandboxed mode): rlimits and a session only. The
    request and record pipes are the fds named on the command line; the files go into the current folder."""
    req_fd, _ = _place([int(sys.argv[2]), int(sys.argv[3])], [None, RECORD_FD])
    req = json.loads(_read_all(req_fd))
    os.closerange(RECORD_FD + 1, 1 << 16)
    try:
        _write("/proc/self/oom_score_adj", "1000")
    except OSError:
        pass
    _write_files(os.getcwd(), req)
    _program(req, os.getcwd(), isolated=False)


def main() -> None:
    if sys.argv[1] == "serve":
        serve(json.loads(sys.argv[2]), socket.socket(fileno=int(sys.argv[3])))
    elif sys.argv[1] == "once":
        once()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} serve CONFIG SOCKET_FD | once REQUEST_FD RECORD_FD")


if __name__ == "__main__":
    main()
