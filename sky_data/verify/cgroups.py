"""cgroups for the code judge (root only): one slot per fork server, so one per run at a time.

A slot holds memory (all of a run's processes together, so that 64 forks of 1 GB each cannot take 64 GB), a
CPU quota of one CPU (so that a program that spins up many processes cannot starve the runs judged beside
it) and the CPU time used (so that a run's time limit counts what it used, not what it waited for). The
fork server joins its slot once; every run it forks is born inside it, which costs nothing (joining a cgroup
costs an RCU grace period, ~10-30 ms). cgroup v1 (memory, cpu, cpuacct) and v2 (memory.max, cpu.max).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import sys
import threading
import time

TMPFS_MB = 64  # the private /tmp of a run, which its memory cgroup also pays for


def group_memory_bytes(memory_mb: int) -> int:
    """Bytes for all of a run's processes and its tmpfs together: the program's limit twice, plus the tmpfs."""
    return (2 * memory_mb + TMPFS_MB + 32) * 1024 * 1024


@functools.cache
def bases() -> dict[str, str]:
    """Controller ("memory", "cpu", "cpuacct", or "unified" for cgroup v2) -> the folder of this process's
    cgroup where this process may create children, for those it may; {} when not root."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return {}
    mounts: dict[str, tuple[str, str]] = {}  # controller -> (mount point, mount root)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, right = line.split(" - ", 1)
                fields, (fstype, _, opts) = left.split(), right.split()[:3]
                if fstype == "cgroup":
                    for c in ("memory", "cpu", "cpuacct"):
                        if c in opts.split(","):
                            mounts.setdefault(c, (fields[4], fields[3]))
                elif fstype == "cgroup2":
                    mounts.setdefault("unified", (fields[4], fields[3]))
        with open("/proc/self/cgroup") as f:
            own = [line.rstrip("\n").split(":", 2) for line in f]
    except (OSError, ValueError, IndexError):
        return {}
    found = {}
    for _, controllers, path in own:
        names = ["unified"] if controllers == "" else controllers.split(",")
        for c in names:
            if c not in mounts:
                continue
            point, root = mounts[c]
            rel = path[len(root):] if root != "/" and path.startswith(root) else path
            base = os.path.normpath(point + "/" + rel.lstrip("/"))
            if _can_create(base):
                found[c] = base
    if "unified" in found and not all(c in found for c in ("memory", "cpu", "cpuacct")):
        with contextlib.suppress(OSError), open(os.path.join(found["unified"], "cgroup.subtree_control")) as f:
            if {"memory", "cpu"} <= set(f.read().split()):
                return {"unified": found["unified"]}
    found.pop("unified", None)
    return found


def _can_create(base: str) -> bool:
    probe = os.path.join(base, f"sky_judge_probe_{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return True


@functools.cache
def _remove_stale_slots() -> None:
    """Slots left by judges that were killed (their zygotes died with them): empty cgroups to remove."""
    for base in set(bases().values()):
        for d in glob.glob(os.path.join(base, "sky_judge_*")):
            owner = os.path.basename(d).split("_")[2]
            if owner.isdigit() and os.path.exists(f"/proc/{owner}"):
                continue
            with contextlib.suppress(OSError):
                os.rmdir(d)


class Slot:
    """The cgroups of one zygote (and so of each of its runs, which follow one another): memory for all of a
    run's processes together, a quota of one CPU, and the CPU time used."""

    _next = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        where = bases()
        _remove_stale_slots()
        with Slot._lock:
            Slot._next += 1
            name = f"sky_judge_{os.getpid()}_{Slot._next}"
        self.dirs: dict[str, str] = {}
        for controller, base in where.items():
            path = os.path.join(base, name)
            with contextlib.suppress(FileExistsError):  # cpu and cpuacct may share a hierarchy
                os.mkdir(path)
            self.dirs[controller] = path
        self.memory_limit = 0
        self.v2 = "unified" in self.dirs
        mem, cpu = self._dir("memory"), self._dir("cpu")
        if cpu:
            with contextlib.suppress(OSError):
                if self.v2:
                    self._put(cpu, "cpu.max", "100000 100000")
                else:
                    self._put(cpu, "cpu.cfs_period_us", "100000")
                    self._put(cpu, "cpu.cfs_quota_us", "100000")
        if mem and not self.v2:  # no swapping around the limit, where the kernel offers the knob
            with contextlib.suppress(OSError):
                self._put(mem, "memory.swappiness", "0")

    def _dir(self, controller: str) -> str | None:
        return self.dirs.get("unified") or self.dirs.get(controller)

    @staticmethod
    def _put(folder: str, name: str, value: str) -> None:
        with open(os.path.join(folder, name), "w") as f:
            f.write(value)

    def join(self, pid: int) -> None:
        for folder in set(self.dirs.values()):
            self._put(folder, "cgroup.procs", str(pid))

    def set_memory(self, limit: int) -> None:
        """The memory limit of the next runs (all their processes and their tmpfs together)."""
        if limit != self.memory_limit and (mem := self._dir("memory")):
            with contextlib.suppress(OSError):  # EBUSY: the kernel could not reclaim below it; keep the old one
                self._put(mem, "memory.max" if self.v2 else "memory.limit_in_bytes", str(limit))
                self.memory_limit = limit

    @property
    def counts_cpu(self) -> bool:
        return self._dir("cpuacct" if not self.v2 else "cpu") is not None and self._dir("cpu") is not None

    def cpu_ns(self) -> int:
        if self.v2:
            with open(os.path.join(self.dirs["unified"], "cpu.stat")) as f:
                return 1000 * int(next(line.split()[1] for line in f if line.startswith("usage_usec")))
        with open(os.path.join(self.dirs["cpuacct"], "cpuacct.usage")) as f:
            return int(f.read())

    def oom_kills(self) -> int:
        mem = self._dir("memory")
        if mem is None:
            return 0
        try:
            with open(os.path.join(mem, "memory.events" if self.v2 else "memory.oom_control")) as f:
                return sum(int(line.split()[1]) for line in f if line.split()[:1] == ["oom_kill"])
        except (OSError, ValueError, IndexError):
            return 0

    def remove(self) -> None:
        for folder in set(self.dirs.values()):
            for _ in range(300):  # the zygote's processes exit within milliseconds of its death
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


