"""The sandbox under hostile programs: each one fails or is contained, never hangs the judge, and afterwards no
process of it is left and nothing outside the sandbox has changed (checked from the host, not from the
program's own report).

Every program names its processes with a unique token (in a file name or an argv), so that stray processes
can be found in the host's /proc. Tests that would harm the host without namespaces (fork bomb, kill -1,
writes as root) pass `isolate=True`, which raises rather than falling back, and skip where the OS gives no
namespaces.
"""

from __future__ import annotations

import ast
import errno
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
from conftest import REPO

from sky_data.verify import sandbox
from sky_data.verify.code import check_code, check_program
from sky_data.verify.sandbox import (
    NPROC,
    TMPFS_MB,
    SandboxUnavailable,
    isolation,
    run_sandboxed,
)

WHY_NOT = isolation()
isolated_only = pytest.mark.skipif(WHY_NOT is not None, reason=f"no namespace isolation on this machine: {WHY_NOT}")


def _visible_host_dir() -> Path:
    """A host folder the sandbox sees (read-only) rather than hides: the checkout unless it lies under a
    folder the sandbox replaces (a CI clone in /tmp, say), else a system folder this test may write."""
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


def _assert_none_left(token: str, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while (left := _processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
    if (base := sandbox._memory_cgroup_base()) is not None:
        assert not [d for d in os.listdir(base[0]) if d.startswith("sky_judge_")], "a run's cgroup was left behind"


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
    code = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '60', '{tok}'])\n"
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
    victim_dir = _visible_host_dir() / f".victim_{tok}"  # a real host folder the program can see (read-only)
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
        }
        code = "import os\n" + "".join(
            f"try:\n    {stmt}\n    print('{name} done')\nexcept OSError as e:\n    print('{name} failed', e.errno)\n"
            for name, stmt in attempts.items())
        # What it may write: its own folder and its private /tmp, /dev/shm.
        code += (f"open('mine.txt', 'w').write('x')\nopen({host_tmp!r}, 'w').write('x')\n"
                 f"open('/dev/shm/{tok}', 'w').write('x')\nprint('own ok')\n")
        passwd = Path("/etc/passwd").read_text()
        run = run_sandboxed({"main.py": code}, ["main.py"], "", 10.0, 1024, isolate=True)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[-1] == "own ok"
        refused = {errno.EROFS, errno.EACCES, errno.EPERM}
        assert [line.split()[1] for line in lines[:-1]] == ["failed"] * len(attempts), lines
        assert all(int(line.split()[2]) in refused for line in lines[:-1]), lines
        assert victim.read_text() == "original" and sorted(p.name for p in victim_dir.iterdir()) == ["keep.txt"]
        assert oct(victim_dir.stat().st_mode & 0o777) != oct(0o777)
        assert Path("/etc/passwd").read_text() == passwd
        assert not os.path.exists(host_tmp) and not os.path.exists(f"/dev/shm/{tok}")  # private tmpfs, now gone
    finally:
        for p in victim_dir.iterdir():
            p.unlink()
        victim_dir.rmdir()


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
    run = sandbox._run({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True, userns=userns)
    if run.returncode == 125 and "sky_judge sandbox" in run.stderr:
        pytest.skip(f"no user namespaces here: {run.stderr.strip()}")
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
    target = _visible_host_dir() / tok
    code = (f"import os, socket\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '60', '{tok}'])\n"
            "print(os.getpid())\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError as e:\n"
            f"    print(e.errno)\ntry:\n    open({str(target)!r}, 'w')\nexcept OSError as e:\n    print(e.errno)\n")
    run = sandbox._run({"main.py": code}, ["main.py"], "", 5.0, 1024, isolate=True, userns=True)
    if run.returncode == 125 and "sky_judge sandbox" in run.stderr:
        pytest.skip(f"no user namespaces here: {run.stderr.strip()}")
    written = target.exists()
    target.unlink(missing_ok=True)
    assert run.stdout.split() == ["2", str(errno.ENETUNREACH), str(errno.EROFS)], (run.stdout, run.stderr)
    assert not written
    _assert_none_left(tok)


def test_fallback_warns_and_required_isolation_raises(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: "pretend: no namespaces")
    with pytest.raises(SandboxUnavailable, match="pretend"):
        run_sandboxed({"main.py": "print(1)"}, ["main.py"], "", 5.0, 1024, isolate=True)
    sandbox._warn_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_sandboxed({"main.py": "print(1)"}, ["main.py"], "", 5.0, 1024)
    assert run.stdout.strip() == "1" and not run.isolated
    assert any("no namespace isolation (pretend" in str(w.message) for w in caught)


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


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=isolated_only)])
def test_memory_of_all_processes_together_is_bounded(isolate):
    # Eight forks of 300 MB each stay under the per-process RLIMIT_AS of 512 MB, but their sum passes the run's
    # memory cgroup (about 2 x 512 MB): the kernel kills some, and the judge calls it "memory".
    if sandbox._memory_cgroup_base() is None:
        pytest.skip("no memory cgroup this process may create (needs root and a writable cgroup fs)")
    code = ("import os, sys, time\nprint(open('/proc/self/oom_score_adj').read().strip(), flush=True)\nkids = []\n"
            "for i in range(8):\n    pid = os.fork()\n    if pid == 0:\n        b = bytearray(300 << 20)\n"
            "        for j in range(0, len(b), 4096):\n            b[j] = 1\n        time.sleep(2)\n        os._exit(0)\n"
            "    kids.append(pid)\nkilled = [os.waitpid(k, 0)[1] & 0x7f for k in kids]\nprint(killed)\n"
            "sys.exit(1 if any(killed) else 0)\n")
    run = run_sandboxed({"main.py": code}, ["main.py"], "", 30.0, 512, isolate=isolate)
    adj, killed = run.stdout.splitlines()
    assert adj == "1000" and run.oom_killed and signal.SIGKILL in ast.literal_eval(killed), (run.stdout, run.stderr)
    v = check_program(code, timeout_s=30.0, memory_mb=512, isolate=isolate)
    assert not v.passed and v.outcomes[0].status == "memory", v.outcomes
    base = sandbox._memory_cgroup_base()[0]
    assert not [d for d in os.listdir(base) if d.startswith("sky_judge_")], "a run's cgroup was left behind"
