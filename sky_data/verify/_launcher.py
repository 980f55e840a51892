"""The sandbox launcher: started by `sandbox.run_sandboxed` as `python -I -S _launcher.py CONFIG_JSON PROG...`,
which then runs `PROG...` (a script and its arguments) as `python -I` would.

Standard library only, and it imports nothing from sky_data: it runs as a script in the judged program's
session, before the program exists. With `"isolate": false` it sets the rlimits and runs the program in its own process.
With `"isolate": true` (Linux) it builds a throw-away container first:

    launcher (host pid namespace; waits, relays the exit status)
      unshare(mount, net, pid, ipc, uts [+ user when not root]); make every mount read-only;
      private tmpfs on /tmp, /var/tmp, /dev/shm; the program's files copied to /tmp/sandbox
      └─ init (pid 1 of the new pid namespace; dies with the launcher through PR_SET_PDEATHSIG)
           mounts a /proc that shows only the sandbox's processes
           └─ program (pid 2, a fork that runs the script): rlimits, no capabilities, no new privileges, and
              when the launcher is root a random unprivileged uid, so that RLIMIT_NPROC applies (root ignores it)

Why each piece:
- pid namespace: when init exits, the kernel SIGKILLs everything left in the namespace, including
  processes that called setsid() to leave the process group the judge kills.
- net namespace: only a loopback interface that is down; no connection leaves, not even to 127.0.0.1.
- read-only mounts + tmpfs: writes outside the sandbox fail; a tmpfs of bounded size takes the rest and
  vanishes with the namespace.
- uid: as root, a random uid in [2^20, 2^31) owns nothing on the host and is shared with no other sandbox,
  so RLIMIT_NPROC counts only this program's processes. Directories the uid cannot traverse on the way to
  the interpreter (e.g. /root for a pyenv Python) are replaced by a tmpfs holding only the interpreter.
- memory: RLIMIT_AS bounds each process, not their sum; as root the judge also puts each run in a memory
  cgroup of its own (`sandbox._make_cgroup`), and every sandboxed process has oom_score_adj 1000.
- user namespace (not root): the unprivileged route to the same namespaces; RLIMIT_NPROC then counts the
  processes of that namespace only.
"""

import ctypes
import json
import os
import resource
import signal
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
SANDBOX_DIR = "/tmp/sandbox"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _make_all_read_only() -> None:
    """Every mount read-only at once (mount_setattr, Linux >= 5.12), else one remount per mount point."""
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)
    ret = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, len(attr))
    if ret == 0:
        return
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:  # parents first, as listed
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        except OSError:
            pass  # a mount we may not touch; the uid and DAC still protect it


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _tmpfs(target: str, size_mb: int, mode: str) -> None:
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode={mode}")


def _blocked_ancestors(paths: list[str]) -> dict[str, list[str]]:
    """For each path the program needs, the first ancestor that others cannot traverse (mode o-x), if any."""
    out: dict[str, list[str]] = {}
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if not os.stat(d).st_mode & 0o001:
                out.setdefault(d, []).append(p)
                break
    return out


def _build_container(cfg: dict, files: dict[str, bytes]) -> None:
    """In the launcher: namespaces and mounts. The launcher itself stays in the host pid namespace."""
    root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not root or cfg.get("userns"):
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if flags & CLONE_NEWUSER:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    hidden = _blocked_ancestors(cfg["expose"]) if root and not flags & CLONE_NEWUSER else {}
    keep = {p: os.open(p, os.O_PATH) for ps in hidden.values() for p in ps}
    _make_all_read_only()
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d):
            _tmpfs(d, cfg["tmpfs_mb"] if d == "/tmp" else 16, "1777")
    for d, paths in hidden.items():  # e.g. /root: a tmpfs with only the interpreter's prefix bound back in
        _tmpfs(d, 1, "755")
        for p in paths:
            os.makedirs(p, exist_ok=True)
            _mount(f"/proc/self/fd/{keep[p]}", p, None, MS_BIND | MS_REC)
            _mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount(None, d, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    for fd in keep.values():
        os.close(fd)
    os.mkdir(SANDBOX_DIR, 0o700)
    for name, data in files.items():
        with open(os.path.join(SANDBOX_DIR, name), "wb") as f:
            f.write(data)
    if cfg["uid"] is not None:
        for name in [SANDBOX_DIR, *(os.path.join(SANDBOX_DIR, n) for n in files)]:
            os.chown(name, cfg["uid"], cfg["uid"])
    os.chdir(SANDBOX_DIR)


def _limit(cfg: dict) -> None:
    """In the program's process: rlimits, then (isolated) no capabilities and the sandbox uid."""
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu"], cfg["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["mem"], cfg["mem"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # applies to every uid but real root (kernel rule); the isolated route never runs as real root
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    except (ValueError, OSError):
        pass
    if cfg["isolate"]:
        for cap in range(64):  # an empty bounding set: no capabilities survive, even for uid 0 of a userns
            if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
                break
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])  # as root: also clears every capability
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _drop_capabilities()
        os.environ["HOME"] = os.getcwd()


def _drop_capabilities() -> None:
    """Empty effective, permitted and inheritable sets (capset v3), for uid 0 of a user namespace."""
    header = struct.pack("Ii", 0x20080522, 0)
    data = bytes(24)  # two (effective, permitted, inheritable) u32 triples, all zero
    _check(_libc.capset(header, data), "capset")


def _run_program(argv: list[str]) -> None:
    """Become the judged program: `python -I argv[0] argv[1:]` in this interpreter, which saves a second
    interpreter start-up per test. The launcher runs with -S, so site's `exit`/`quit` builtins and the
    site-packages folders (without their .pth hooks) are put back first. The program's exceptions and
    SystemExit propagate to the top level, where the interpreter reports and exits as `python` would."""
    import _sitebuiltins
    import builtins
    import runpy

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    sys.path.extend(p for p in json.loads(os.environ.pop("SKY_SITE", "[]")) if p not in sys.path)
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


def _init(cfg: dict, argv: list[str], status_fd: int) -> None:
    """pid 1 of the sandbox: mount its /proc, start the program as pid 2, reap until it ends, report its wait
    status to the launcher and exit, which kills whatever the program left behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the launcher, even if not by group kill
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # e.g. a container with masked /proc paths; the host /proc stays (read-only, as a uid with no rights)
    child = os.fork()
    if child == 0:  # the program: no try/finally on this path, so its exit is the interpreter's normal exit
        os.close(status_fd)
        _limit(cfg)
        _run_program(argv)
        sys.exit(0)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    os.write(status_fd, str(status).encode())
    os._exit(0)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    if cfg.get("cgroup"):  # before anything starts, so that all of it counts against the group's memory
        with open("/proc/self/cgroup") as f:
            joined = os.path.basename(cfg["cgroup"]) in f.read()
        if not joined:  # the judge attaches us while we start up; if it has not yet, wait for it here
            _write(os.path.join(cfg["cgroup"], "cgroup.procs"), str(os.getpid()))
    try:  # the host's OOM killer takes sandboxed processes first
        _write("/proc/self/oom_score_adj", "1000")
    except OSError:
        pass
    if not cfg["isolate"]:
        _limit(cfg)
        _run_program(argv)
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    files = {}
    for name in os.listdir("."):
        with open(name, "rb") as f:
            files[name] = f.read()
    try:
        _build_container(cfg, files)
    except OSError as e:
        print(f"sky_judge sandbox: {e}", file=sys.stderr)
        os._exit(125)  # the judge reads this as a runtime error naming the sandbox
    r, w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(r)
        _init(cfg, argv, w)  # the program's process returns from here only by raising SystemExit or an error
    os.close(w)
    os.waitpid(init, 0)
    reported = os.read(r, 64)
    if not reported:  # init died before the program ended (killed): nothing to relay
        os._exit(126)
    status = int(reported)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
