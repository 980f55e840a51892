"""The sandbox under hostile programs: each one fails or is contained, never hangs the judge, and afterwards no
process of it is left and nothing outside the sandbox has changed (checked from the host, not from the
program's own report).

Every program names its processes with a unique token (in a file name or an argv), so that stray processes
can be found in the host's /proc. Tests that would harm the host without namespaces (fork bomb, kill -1,
writes as root) need the isolated sandbox (the default, which raises rather than falling back) and skip where
the OS gives no namespaces. `isolate=False` is the opt-in unsandboxed mode.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
from conftest import REPO, SHARED

from sky_data.verify import cgroups, sandbox
from sky_data.verify.code import check_code, check_program
from sky_data.verify.sandbox import (
    NPROC,
    TMPFS_MB,
    SandboxUnavailable,
    isolation,
    run_sandboxed,
)

SLEEPER = "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{tok}'])"

WHY_NOT = isolation()
isolated_only = pytest.mark.skipif(WHY_NOT is not None, reason=f"no namespace isolation on this machine: {WHY_NOT}")


def _host_dir() -> Path:
    """A host folder outside /tmp and HOME that this test may write: the checkout's tests/ where possible."""
    hidden = ("/tmp", "/var/tmp", "/dev/shm", str(Path.home()))
    for d in (REPO / "tests", Path("/opt"), Path("/srv"), Path("/mnt"), Path("/var/cache")):
        real = str(d.resolve())
        if d.is_dir() and os.access(d, os.W_OK) and not any(real == h or real.startswith(h + "/") for h in hidden):
            return d
    pytest.skip("no writable host folder outside /tmp and HOME to use as a victim")


def _token() -> str:
    return "skytok" + uuid.uuid4().hex[:12]


def _processes_with(token: str) -> list[str]:
    """Live (non-zombie) host processes whose command line contains `token`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token in cmd and state != "Z":
            found.append(f"{pid}: {cmd[:120]}")
    return found


def _slot_processes() -> set[int]:
    """Every process in the judge's cgroup slots (sky_judge_*), which should be its idle fork servers only."""
    pids = set()
    for base in set(cgroups.bases().values()):
        for d in Path(base).glob("sky_judge_*"):
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
    return pids


def _zygote_pids() -> set[int]:
    return {z.proc.pid for pool in sandbox._POOLS.values() for z in pool._all}


def _assert_none_left(token: str, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while (left := _processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
    assert _slot_processes() <= _zygote_pids(), "a run's process is still in its cgroup slot"


def test_isolation_is_available_where_ci_runs():
    # CI (root, Linux) must exercise the isolated sandbox; elsewhere this test says why it is not there.
    if os.environ.get("CI") and sys.platform.startswith("linux"):
        assert WHY_NOT is None, WHY_NOT
    elif WHY_NOT is not None:
        pytest.skip(WHY_NOT)


# ---------------------------------------------------------------- time and processes


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_infinite_loop_times_out_and_leaves_no_process(isolate):
    tok = _token()
    t0 = time.monotonic()
    run = run_sandboxed({f"{tok}.py": "while True:\n    pass\n"}, [f"{tok}.py"], "", 1.0, 1024, isolate=isolate)
    assert run.returncode is None and time.monotonic() - t0 < 1.0 + 2.0
    assert run.isolated == isolate
    _assert_none_left(tok)
    v = check_code("while True:\n    pass\n", {"inputs": [""], "outputs": ["x"]}, timeout_s=1.0, isolate=isolate)
    assert not v.passed and v.outcomes[0].status == "timeout" and "exceeded 1.0 s" in v.outcomes[0].reason


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_children_in_the_process_group_die_with_the_program(isolate):
    tok = _token()
    code = (f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{tok}'])\n"
            "print('started', flush=True)\ntime.sleep(60)\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 1.5, 1024, isolate=isolate)
    assert run.returncode is None and run.stdout.strip() == "started"
    _assert_none_left(tok)


@isolated_only
@pytest.mark.parametrize("wait", [False, True], ids=["program-exits", "program-times-out"])
def test_setsid_does_not_escape(wait):
    # A child that starts its own session leaves the process group the judge kills; it must still die with the
    # sandbox's pid namespace, whether the program exits at once or overruns its time.
    tok = _token()
    code = (f"import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    {SLEEPER.format(tok=tok)}\n"
            f"print('forked', flush=True)\n" + ("time.sleep(60)\n" if wait else ""))
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 1.5, 1024, isolate=True)
    assert run.stdout.strip() == "forked" and run.returncode == (None if wait else 0)
    _assert_none_left(tok)


@isolated_only
def test_fork_bomb_stops_at_the_process_limit_and_leaves_nothing():
    tok = _token()
    counted = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n"
               "        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n")
    t0 = time.monotonic()
    run = run_sandboxed({f"{tok}.py": counted}, [f"{tok}.py"], "", 5.0, 1024, isolate=True)
    n, err = run.stdout.split()
    assert int(n) < NPROC and int(err) == errno.EAGAIN, run.stdout
    assert run.returncode == 0 and time.monotonic() - t0 < 5.0  # the program ended; its sleepers were killed
    _assert_none_left(tok)
    # The classic: every process forks forever. The judge returns in time and nothing is left.
    tok = _token()
    t0 = time.monotonic()
    run = run_sandboxed({f"{tok}.py": "import os\nwhile True:\n    os.fork()\n"}, [f"{tok}.py"], "", 2.0, 1024,
                        isolate=True)
    assert time.monotonic() - t0 < 2.0 + 3.0
    _assert_none_left(tok)
    assert not check_program("import os\nwhile True:\n    os.fork()\n", timeout_s=2.0, isolate=True).passed


def test_memory_bomb_is_memory_error():
    # Under RLIMIT_AS Python raises MemoryError, which the judge reports as "memory".
    for bomb in ("x = [0] * (10 ** 10)", "x = []\nwhile True:\n    x.append(bytearray(10 ** 6))"):
        v = check_code(bomb + "\nprint(1)", {"inputs": [""], "outputs": ["1"]}, memory_mb=256)
        assert not v.passed and v.outcomes[0].status == "memory", v.outcomes


@isolated_only
def test_signals_cannot_reach_the_judge_or_the_host():
    # kill(-1) as root would kill every process on the machine; in the sandbox it reaches nothing outside.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        code = ("import os, signal\nfor target in (-1, os.getppid(), 1):\n    try:\n"
                "        os.kill(target, signal.SIGKILL)\n    except OSError as e:\n        print(target, e.errno)\n"
                "print('alive')\n")
        run = run_sandboxed({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True)
        assert bystander.poll() is None, "a host process was killed"
        assert run.returncode in (0, -signal.SIGKILL)  # kill(-1) may include the program itself
    finally:
        bystander.kill()
        bystander.wait()


# ---------------------------------------------------------------- files


@isolated_only
def test_writes_outside_the_sandbox_fail_and_change_nothing():
    tok = _token()
    victim_dir = _host_dir() / f".victim_{tok}"  # a real host folder (which the sandbox does not even see)
    victim_dir.mkdir()
    try:
        victim = victim_dir / "keep.txt"
        victim.write_text("original")
        host_tmp = os.path.join(tempfile.gettempdir(), f"{tok}.txt")
        attempts = {
            "overwrite": f"open({str(victim)!r}, 'w').write('pwned')",
            "delete": f"os.remove({str(victim)!r})",
            "create": f"open({str(victim_dir / 'new.txt')!r}, 'w').write('x')",
            "chmod": f"os.chmod({str(victim_dir)!r}, 0o777)",
            "etc": "open('/etc/passwd', 'a').write('x')",
            "interpreter": f"open({sys.executable!r}, 'a').write('x')",  # what it sees, it sees read-only
            "stdlib": f"open({os.__file__!r}, 'a').write('x')",
            "root": "open('/pwned', 'w').write('x')",
        }
        code = "import os\n" + "".join(
            f"try:\n    {stmt}\n    print('{name} done')\nexcept OSError as e:\n    print('{name} failed', e.errno)\n"
            for name, stmt in attempts.items())
        # What it may write: its own folder and its private /tmp, /dev/shm.
        code += (f"open('mine.txt', 'w').write('x')\nopen({host_tmp!r}, 'w').write('x')\n"
                 f"open('/dev/shm/{tok}', 'w').write('x')\nprint('own ok')\n")
        passwd = Path("/etc/passwd").read_text()
        run = run_sandboxed({"main.py": code}, ["main.py"], "", 10.0, 1024)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[-1] == "own ok"
        refused = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}
        assert [line.split()[1] for line in lines[:-1]] == ["failed"] * len(attempts), lines
        assert all(int(line.split()[2]) in refused for line in lines[:-1]), lines
        assert victim.read_text() == "original" and sorted(p.name for p in victim_dir.iterdir()) == ["keep.txt"]
        assert oct(victim_dir.stat().st_mode & 0o777) != oct(0o777)
        assert Path("/etc/passwd").read_text() == passwd and not Path("/pwned").exists()
        assert not os.path.exists(host_tmp) and not os.path.exists(f"/dev/shm/{tok}")  # private tmpfs, now gone
    finally:
        for p in victim_dir.iterdir():
            p.unlink()
        victim_dir.rmdir()


@isolated_only
def test_host_files_are_not_there_at_all():
    # The attack: a solution that opens the benchmark's own test file on the machine (HumanEval's, in
    # ../shared/data) and runs the reference. The sandbox's root holds only what a program needs to run.
    tok = _token()
    in_home = Path.home() / f".{tok}"  # HOME may hold the interpreter (pyenv): the folder shows, nothing else
    in_home.write_text("secret")
    secrets_ = [SHARED / "data" / "humaneval" / "test.jsonl", REPO / "sky_data" / "verify" / "code.py", REPO,
                in_home, Path("/etc/passwd"), Path("/etc"), Path("/work"), Path("/var"), Path("/run"),
                Path(os.getcwd()), Path(sys.prefix) / "include"]
    code = ("import os, sys\nfor p in sys.argv[1:]:\n    print(p, os.path.exists(p))\n"
            "print(sorted(os.listdir('/')))\nprint(sorted(os.listdir('/dev')))\n")
    try:
        run = run_sandboxed({"main.py": code}, ["main.py", *map(str, secrets_)], "", 10.0, 1024)
    finally:
        in_home.unlink()
    *seen, top, dev = run.stdout.splitlines()
    visible = [line for line in seen if line.endswith("True")]
    assert len(seen) == len(secrets_) and not visible, f"host paths visible in the sandbox: {visible}"
    assert set(top.strip("[]").replace("'", "").split(", ")) <= {"dev", "proc", "tmp", "usr", "lib", "lib64", "bin",
                                                                "root", "opt", "home", "nix", "srv"}, top
    assert set(eval(dev)) <= {"null", "zero", "full", "random", "urandom", "shm", "fd", "stdin", "stdout", "stderr"}


@isolated_only
def test_site_packages_hold_only_the_allowed_packages():
    # numpy is there (PACKAGES); torch, transformers and this project are not, though the judge has them all.
    code = ("import importlib.util, sys\nfor name in sys.argv[1:]:\n"
            "    print(name, importlib.util.find_spec(name) is not None)\n")
    names = ["numpy", "torch", "transformers", "sky_data", "pytest", "math_verify"]
    run = run_sandboxed({"main.py": code}, ["main.py", *names], "", 20.0, 2048)
    found = dict(line.split() for line in run.stdout.splitlines())
    assert found == {"numpy": "True", **{n: "False" for n in names[1:]}}, (run.stdout, run.stderr)


@isolated_only
def test_host_unix_sockets_are_unreachable():
    # A path socket on the host filesystem and an abstract one on the host's network namespace: the network
    # namespace does not cover path sockets, the missing host filesystem does.
    tok = _token()
    path = _host_dir() / f".{tok}.sock"
    servers = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)]
    servers[0].bind(str(path))
    servers[1].bind(f"\0{tok}")
    for srv in servers:
        srv.listen(4)
        srv.settimeout(0.2)
    try:
        code = ("import socket, sys\nfor addr in (sys.argv[1], '\\0' + sys.argv[2]):\n"
                "    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(addr)\n        print('connected')\n"
                "    except OSError as e:\n        print('blocked', e.errno)\n")
        run = run_sandboxed({"main.py": code}, ["main.py", str(path), tok], "", 10.0, 1024)
        accepted = []
        for srv in servers:
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(srv.accept())
        assert not accepted, "a host unix socket accepted a connection from the sandbox"
        assert run.stdout.split("\n")[:2] == [f"blocked {errno.ENOENT}", f"blocked {errno.ECONNREFUSED}"], run.stdout
    finally:
        for srv in servers:
            srv.close()
        path.unlink(missing_ok=True)


@isolated_only
def test_a_run_cannot_find_an_earlier_runs_program_in_memory():
    # The fork server never holds a program, its input or its files: they travel on pipes that only the run
    # reads. A later run scanning every readable page of its own (forked) memory finds no trace of them.
    tok = _token()
    secret = f"{tok}-expected-answer-42"
    run_sandboxed({"main.py": f"# {secret}\nprint(input())"}, ["main.py"], secret, 10.0, 1024)
    scan = ("import ctypes, sys\nneedle = bytes.fromhex(sys.argv[1])\nskip = id(needle) + 32\nhits = 0\n"
            "for line in open('/proc/self/maps'):\n    addr, perms = line.split()[:2]\n"
            "    if 'r' not in perms or line.rstrip().endswith(('[vvar]', '[vsyscall]', '[vvar_vclock]')):\n        continue\n"
            "    lo, hi = (int(x, 16) for x in addr.split('-'))\n    try:\n        data = ctypes.string_at(lo, hi - lo)\n"
            "    except Exception:\n        continue\n    at = data.find(needle)\n    while at >= 0:\n"
            "        hits += lo + at != skip\n        at = data.find(needle, at + 1)\nprint(hits)\n")
    run = run_sandboxed({"main.py": scan}, ["main.py", secret.encode().hex()], "", 30.0, 2048)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0", "a run found an earlier run's program or input in its memory"


@isolated_only
def test_disk_use_is_bounded():
    # Files stop at RLIMIT_FSIZE (16 MB, EFBIG) and the private /tmp at its size (ENOSPC); the host disk is untouched.
    code = ("import os\ntotal = 0\ntry:\n    for i in range(1000):\n        with open(f'f{i}', 'wb') as f:\n"
            "            for _ in range(4):\n                f.write(b'x' * 4_000_000)\n                total += 4\n"
            "except OSError as e:\n    print(total, e.errno)\n"
            "try:\n    open('big', 'wb').write(b'x' * 20_000_000)\nexcept OSError as e:\n    print(e.errno)\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 20.0, 1024, isolate=True)
    first, second = run.stdout.splitlines()
    total, err = (int(x) for x in first.split())
    assert err == errno.ENOSPC and TMPFS_MB - 16 <= total <= TMPFS_MB, first
    assert int(second) in (errno.EFBIG, errno.ENOSPC)


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_host_temp_dir_is_removed_after_run(isolate):
    before = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("sky_judge_")}
    code = "import os\nopen('junk.txt', 'w').write('x')\nprint(os.path.exists('junk.txt'))"
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=isolate)
    assert run.returncode == 0 and run.stdout.strip() == "True"
    after = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("sky_judge_")}
    assert after <= before


# ---------------------------------------------------------------- secrets, processes, network


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_environment_is_scrubbed(monkeypatch, isolate):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-leak")
    monkeypatch.setenv("SECRET", "hunter2")
    code = "import os\nprint(os.environ.get('OPENAI_API_KEY'), os.environ.get('SECRET'), sorted(os.environ))"
    ok = {"inputs": [""], "outputs": ["None None ['HOME', 'LANG', 'PATH', 'PYTHONHASHSEED']"]}
    v = check_code(code, ok, isolate=isolate)
    assert v.passed, v.outcomes


@isolated_only
def test_host_processes_and_files_of_the_judge_are_invisible():
    # The program sees only its own pid namespace (init and itself), and not the judge's home folder.
    code = ("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
            "print(open('/proc/1/cmdline', 'rb').read().count(b'\\0') > 0)\n"
            "print(sorted(os.listdir(os.path.expanduser('~'))))\nprint(os.getuid())\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True)
    pids, _, home, uid = run.stdout.splitlines()
    assert pids == "[1, 2]", run.stdout
    assert home == "['main.py']"  # HOME is the sandbox folder
    if os.geteuid() == 0:
        assert int(uid) >= 1 << 20, "root's sandbox must run as an unprivileged uid"


@isolated_only
@pytest.mark.parametrize("userns", [False, True], ids=["root-route", "userns-route"])
def test_no_capabilities_to_undo_the_sandbox(userns):
    # Remounting the read-only root writable needs CAP_SYS_ADMIN, which the program does not have on either
    # route (in a user namespace it is uid 0 there, so an empty bounding set is what keeps it powerless).
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.mount(None, b'/', None, ctypes.c_ulong(32 | 4096), None)\nprint(r, ctypes.get_errno())\n"
            "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n")
    try:
        run = sandbox._run({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True, userns=userns)
    except SandboxUnavailable as e:
        pytest.skip(f"no user namespaces here: {e}")
    res, caps = run.stdout.splitlines()
    assert res == f"-1 {errno.EPERM}" and int(caps, 16) == 0, run.stdout


@isolated_only
def test_sockets_reach_nothing():
    # A server on the host's loopback gets no connection; outside addresses are unreachable.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted = []
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                accepted.append(server.accept())
            except (TimeoutError, OSError):
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    port = server.getsockname()[1]
    code = ("import socket\nfor addr in [('127.0.0.1', PORT), ('1.1.1.1', 53), ('10.0.0.1', 80)]:\n    try:\n"
            "        socket.create_connection(addr, timeout=2).sendall(b'x')\n        print('connected', addr)\n"
            "    except OSError as e:\n        print('blocked', e.errno)\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    u.sendto(b'x', ('127.0.0.1', PORT))\n"
            "    print('sent')\nexcept OSError as e:\n    print('blocked', e.errno)\n").replace("PORT", str(port))
    try:
        run = run_sandboxed({"main.py": code}, ["main.py"], "", 10.0, 1024, isolate=True)
        done.set()
        t.join()
        assert not accepted, "the sandbox reached a host server"
        assert run.stdout.split("\n")[:4] == [f"blocked {errno.ENETUNREACH}"] * 4, run.stdout
    finally:
        server.close()


# ---------------------------------------------------------------- output, modes, fallback


def test_huge_output_is_capped_and_judged_wrong():
    run = run_sandboxed({"main.py": "import sys\nsys.stdout.write('x' * 50_000_000)"}, ["main.py"], "", 10.0, 1024)
    assert run.returncode == 0 and len(run.stdout) <= 4 * 1024 * 1024
    assert not check_code("print('x' * 50_000_000)", {"inputs": [""], "outputs": ["x"]}).passed


@isolated_only
def test_user_namespace_route_isolates_too():
    # The route a non-root judge takes (an unprivileged user namespace), forced here even when root.
    tok = _token()
    target = _host_dir() / tok
    code = (f"import os, socket, sys\nif os.fork() == 0:\n    os.setsid()\n    {SLEEPER.format(tok=tok)}\n"
            "print(os.getpid())\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError as e:\n"
            f"    print(e.errno)\ntry:\n    open({str(target)!r}, 'w')\nexcept OSError as e:\n    print(e.errno)\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")
    try:
        run = sandbox._run({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True, userns=True)
    except SandboxUnavailable as e:
        pytest.skip(f"no user namespaces here: {e}")
    written = target.exists()
    target.unlink(missing_ok=True)
    out = run.stdout.split("\n")
    assert out[:3] == ["2", str(errno.ENETUNREACH), str(errno.ENOENT)], (run.stdout, run.stderr)
    assert out[3] in ("[1, 2]", "[1, 2, 3]"), out  # its own /proc: init, itself, perhaps the sleeper
    assert not written
    _assert_none_left(tok)


def test_no_silent_fallback_unsandboxed_only_by_name(monkeypatch):
    # Without namespaces the default raises, naming the opt-in; isolate=False runs unsandboxed, with a warning.
    monkeypatch.setattr(sandbox, "isolation", lambda: "pretend: no namespaces")
    with pytest.raises(SandboxUnavailable, match=r"pretend.*isolate=False"):
        run_sandboxed({"main.py": "print(1)"}, ["main.py"], "", 5.0, 1024)
    with pytest.raises(SandboxUnavailable, match="pretend"):
        check_code("print(1)", {"inputs": [""], "outputs": ["1"]})
    from sky_data.verify.code import check_code_batch

    with pytest.raises(SandboxUnavailable, match="pretend"):
        check_code_batch([("print(1)", {"inputs": [""], "outputs": ["1"]})])
    sandbox._warn_unsandboxed.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_sandboxed({"main.py": "print(1)"}, ["main.py"], "", 5.0, 1024, isolate=False)
    assert run.stdout.strip() == "1" and not run.isolated
    assert any("WITHOUT a sandbox" in str(w.message) for w in caught)


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_program_sees_a_normal_python(isolate):
    # site-packages (numpy), the exit() builtin, __name__ == "__main__", argv, and tracebacks as python prints them.
    code = ("import sys, numpy\nprint(int(numpy.arange(4).sum()), __name__, sys.argv)\n"
            "if sys.argv[1:] == ['boom']:\n    raise KeyError('x')\nexit(3)\n")
    run = run_sandboxed({"main.py": code}, ["main.py", "arg"], "", 20.0, 2048, isolate=isolate)
    assert (run.returncode, run.stdout) == (3, "6 __main__ ['main.py', 'arg']\n"), run.stderr
    run = run_sandboxed({"main.py": code}, ["main.py", "boom"], "", 20.0, 2048, isolate=isolate)
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1] == "KeyError: 'x'"
    assert 'File "main.py", line 4' in run.stderr


@isolated_only
def test_memory_of_all_processes_together_is_bounded():
    # Eight forks of 300 MB each stay under the per-process RLIMIT_AS of 512 MB, but their sum passes the run's
    # memory cgroup (about 2 x 512 MB): the kernel kills some, and the judge calls it "memory".
    if "memory" not in cgroups.bases() and "unified" not in cgroups.bases():
        pytest.skip("no memory cgroup this process may create (needs root and a writable cgroup fs)")
    code = ("import os, sys, time\nprint(open('/proc/self/oom_score_adj').read().strip(), flush=True)\nkids = []\n"
            "for i in range(8):\n    pid = os.fork()\n    if pid == 0:\n        b = bytearray(300 << 20)\n"
            "        for j in range(0, len(b), 4096):\n            b[j] = 1\n        time.sleep(2)\n        os._exit(0)\n"
            "    kids.append(pid)\nkilled = [os.waitpid(k, 0)[1] & 0x7f for k in kids]\nprint(killed)\n"
            "sys.exit(1 if any(killed) else 0)\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 30.0, 512)
    adj, killed = run.stdout.splitlines()
    assert adj == "1000" and run.oom_killed and signal.SIGKILL in ast.literal_eval(killed), (run.stdout, run.stderr)
    v = check_program(code, timeout_s=30.0, memory_mb=512)
    assert not v.passed and v.outcomes[0].status == "memory", v.outcomes
    assert _slot_processes() <= _zygote_pids(), "a run's process is still in its cgroup slot"


# ---------------------------------------------------------------- fairness, threads, signals, where Python lives


@isolated_only
def test_one_program_cannot_make_the_others_time_out():
    # 40 spinning processes, each in its own session, beside a benign program that needs ~0.3 s of CPU. Each
    # run is held to one CPU by its slot's cgroup and timed in CPU seconds, so the benign verdict is the same
    # as when it is judged alone.
    if "cpu" not in cgroups.bases() and "unified" not in cgroups.bases():
        pytest.skip("no cpu cgroup this process may create (needs root and a writable cgroup fs)")
    from sky_data.verify.code import check_code_batch

    spinner = ("import os\nfor _ in range(40):\n    if os.fork() == 0:\n        os.setsid()\n"
               "        while True:\n            pass\nwhile True:\n    pass\n")
    benign = "x = 0\nfor i in range(3_000_000):\n    x += i\nprint(x)"
    tests = {"inputs": [""] * 3, "outputs": [str(sum(range(3_000_000)))] * 3}
    alone = check_code(benign, tests, timeout_s=2.0)
    assert alone.passed, alone.outcomes
    spent = max(o.time_s for o in alone.outcomes)
    verdicts = check_code_batch([(spinner, {"inputs": [""], "outputs": ["x"]}), (benign, tests)], workers=2,
                                timeout_s=2.0, stop_on_failure=False)
    assert verdicts[0].status == "timeout"
    assert verdicts[1].passed, (verdicts[1].outcomes, f"alone: {spent:.2f} s")


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_a_program_may_start_fifty_threads(isolate):
    # Under the 1 GB address-space limit, glibc's 64 MB malloc arena per thread left room for ~14 threads.
    code = ("import threading\nbarrier = threading.Barrier(51)\nts = [threading.Thread(target=barrier.wait)"
            " for _ in range(50)]\nfor t in ts:\n    t.start()\nbarrier.wait()\nfor t in ts:\n    t.join()\nprint('ok')\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 20.0, 1024, isolate=isolate)
    assert (run.returncode, run.stdout) == (0, "ok\n"), run.stderr[-500:]


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_a_signal_kill_is_reported_by_its_number(isolate):
    for sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM):
        v = check_code(f"import os\nprint(1, flush=True)\nos.kill(os.getpid(), {int(sig)})\n",
                       {"inputs": [""], "outputs": ["1"]}, isolate=isolate)
        assert (v.passed, v.status, v.outcomes[0].reason) == (False, "runtime_error", f"killed by signal {int(sig)}")


@isolated_only
def test_the_judge_works_from_a_virtual_environment_under_tmp(tmp_path):
    # A new user's set-up: a venv under /tmp (hidden by the sandbox's private /tmp before), judging programs
    # that import numpy and start `sys.executable`.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    script = (
        "import json\nfrom sky_data.verify import check_code, check_program\n"
        "numpy = check_code('import numpy\\nprint(int(numpy.arange(int(input())).sum()))', {'inputs': ['5'], 'outputs': ['10']})\n"
        "child = check_program('import subprocess, sys\\nassert subprocess.run([sys.executable, \"-c\", \"print(7)\"], "
        "capture_output=True, text=True).stdout == \"7\\\\n\"')\n"
        "print(json.dumps([numpy.passed, child.passed, [o.reason for o in numpy.outcomes + child.outcomes]]))\n"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    numpy_ok, child_ok, reasons = json.loads(out.stdout.strip().splitlines()[-1])
    assert numpy_ok and child_ok, reasons


@isolated_only
def test_a_program_holds_no_descriptor_of_the_judge_or_the_fork_server():
    # Only stdin, stdout, stderr and the record pipe: not the fork server's control socket (through which it
    # could ask for runs of its own), nor the request pipe, nor anything of the root's construction.
    code = ("import os\nfds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))\n"
            "print([(fd, os.readlink(f'/proc/self/fd/{fd}').split(':')[0]) for fd in fds if fd != fds[-1]])\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 5.0, 1024)
    assert run.stdout.strip() == "[(0, 'pipe'), (1, 'pipe'), (2, 'pipe'), (3, 'pipe')]", (run.stdout, run.stderr)


@isolated_only
def test_the_standard_library_works_in_the_minimal_root():
    # The root holds only the interpreter and its libraries, and that is enough for what solutions use:
    # extension modules (ssl, sqlite3, lzma, ctypes), UTF-8 I/O, multiprocessing (sem_open in /dev/shm), a child
    # interpreter, temp files, numpy's BLAS and sortedcontainers.
    code = (
        "import sys, decimal, fractions, random, sqlite3, hashlib, ssl, lzma, bz2, zlib, ctypes, uuid, time\n"
        "print('héllo ✓', sys.stdout.encoding, input())\n"
        "def sq(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    import multiprocessing as mp, subprocess, tempfile, numpy as np, sortedcontainers\n"
        "    with mp.Pool(2) as p:\n        print(p.map(sq, range(5)))\n"
        "    print(subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True, text=True).stdout.strip())\n"
        "    with tempfile.NamedTemporaryFile() as f:\n        print(f.name.startswith('/tmp/'))\n"
        "    print(np.linalg.inv(2 * np.eye(3)).sum(), list(sortedcontainers.SortedList([3, 1, 2])))\n"
    )
    run = run_sandboxed({"main.py": code}, ["main.py"], "ünïcode\n", 30.0, 2048)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["héllo ✓ utf-8 ünïcode", "[0, 1, 4, 9, 16]", "7", "True", "1.5 [1, 2, 3]"]
