"""What a judged program sees: the plan of its root filesystem, which `_launcher._build_root` carries out.

The root is an empty tmpfs into which only these are bound, read-only, each at its host path (symlinks on
the way are copied, so that `/lib64/ld-linux-x86-64.so.2` or a venv's `bin/python` resolve as on the host):
- the interpreter (`sys.executable` and what it links to) and `pyvenv.cfg` under a venv;
- the standard library (and lib-dynload), with every site-packages folder inside it masked by an empty
  tmpfs, into which only the packages in `PACKAGES` are bound back;
- the shared libraries that these load, as `ldd` lists them: a system library folder whole (glibc loads
  some libraries on demand, e.g. libgcc_s), any other library as a file;
- /dev/null, zero, full, random, urandom; /dev/fd, /dev/std*, and /dev/shm as a link to /tmp;
- /proc (the host's, as a mount point: every run mounts its own over it) and an empty /tmp.
Nothing else: no /etc, no home folders, no benchmark data, no checkout, no host sockets.

`root_plan()` returns the steps (`["dir", path]`, `["symlink", path, target]`, `["bind", path, kind]`,
`["tmpfs", path]`, `["ro", path]`) and the folders to add to the program's sys.path.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import site
import stat
import subprocess
import sys
import sysconfig

PACKAGES = ("numpy", "sortedcontainers")  # what a judged program may import beyond the standard library


def _site_dirs() -> list[str]:
    """Every folder where this interpreter (or its base, under a venv) keeps third-party packages."""
    dirs = set()
    for base in {sys.prefix, sys.base_prefix}:
        paths = sysconfig.get_paths(vars={"base": base, "platbase": base})
        dirs.update(paths[k] for k in ("purelib", "platlib"))
    with contextlib.suppress(AttributeError):
        dirs.update(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        dirs.add(site.getusersitepackages())
    dirs.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    dirs.update(glob.glob("/usr/lib/python3*/dist-packages") + glob.glob("/usr/local/lib/python3*/dist-packages"))
    return sorted({os.path.realpath(d) for d in dirs if os.path.isdir(d)})


def _package_paths(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(paths to expose, folders for sys.path) of the importable packages among `names`."""
    paths, parents = [], []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.submodule_search_locations:
            where = [os.path.realpath(p) for p in spec.submodule_search_locations]
        elif spec.origin and os.path.isfile(spec.origin):
            where = [os.path.realpath(spec.origin)]
        else:
            continue
        for p in where:
            parent = os.path.dirname(p)
            paths.append(p)
            paths += glob.glob(os.path.join(parent, f"{name}.libs")) + glob.glob(os.path.join(parent, f"{name}-*.libs"))
            if parent not in parents:
                parents.append(parent)
    return paths, parents


_SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64")


def _shared_libraries(elf_files: list[str]) -> list[tuple[str, str]]:
    """(path, "dir" or "file") for the shared libraries these ELF files load: a system library folder whole
    (so that what glibc loads on demand, e.g. libgcc_s, is there), any other library as a file. `ldd` says
    which; without it, the system library folders."""
    found: dict[str, str] = {}
    for i in range(0, len(elf_files), 200):
        try:
            out = subprocess.run(["ldd", *elf_files[i : i + 200]], capture_output=True, text=True, timeout=60,
                                 env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C"}).stdout
        except (OSError, subprocess.TimeoutExpired):
            return [(d, "dir") for d in _SYSTEM_LIB_DIRS if os.path.isdir(d)]
        for line in out.splitlines():
            parts = line.strip().split()
            path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0] if parts else ""
            if not path.startswith("/") or not os.path.exists(path):
                continue
            folder = os.path.dirname(path)
            real = os.path.realpath(folder)
            if any(real == d or real.startswith(d + "/") for d in _SYSTEM_LIB_DIRS):
                found.setdefault(folder, "dir")
                if os.path.islink(path):  # the loader's path as programs name it (/lib64/ld-linux-x86-64.so.2)
                    found.setdefault(path, "file")
            else:
                found.setdefault(path, "file")
    return sorted(found.items())


def _elf_files(roots: list[str]) -> list[str]:
    out = []
    for root in roots:
        if os.path.isfile(root):
            out.append(root)
            continue
        for folder, _, names in os.walk(root):
            out += [os.path.join(folder, n) for n in names if n.endswith(".so") or ".so." in n]
    return out


class _Planner:
    """Steps that make host paths appear in a new, empty root exactly where they are on the host: folders are
    made, symlinks copied (and their targets exposed in turn), the paths themselves bound read-only."""

    def __init__(self) -> None:
        self.ops: list[list[str]] = []
        self.bound: set[str] = set()
        self.masks: set[str] = set()
        self.made: set[str] = set()

    def visible(self, path: str) -> bool:
        """True when `path` lies inside a bound folder (and not inside a mask over part of it)."""
        best, kind = "", ""
        for group, name in ((self.bound, "bind"), (self.masks, "mask")):
            for p in group:
                if (path == p or path.startswith(p + "/")) and len(p) > len(best):
                    best, kind = p, name
        return kind == "bind"

    def expose(self, path: str, kind: str = "", depth: int = 0) -> None:
        if depth > 40 or not os.path.lexists(path) or self.visible(path):
            return
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur += "/" + part
            shown = self.visible(cur) or cur in self.made or cur in self.masks  # already in the new root
            st = os.lstat(cur)
            if stat.S_ISLNK(st.st_mode):
                if not shown:
                    self.ops.append(["symlink", cur, os.readlink(cur)])
                    self.made.add(cur)
                rest = "/".join(parts[i + 1 :])
                # One step only: the target may be a symlink too (venv/bin/python -> .../bin/python -> python3.11),
                # and each link on the way must exist in the new root.
                target = os.path.normpath(os.path.join(os.path.realpath(os.path.dirname(cur)), os.readlink(cur)))
                self.expose(os.path.join(target, rest) if rest else target, kind, depth + 1)
                return
            if i == len(parts) - 1:
                how = kind if kind in ("dev", "proc") else "dir" if stat.S_ISDIR(st.st_mode) else "file"
                self.ops.append(["bind", cur, how])
                self.bound.add(cur)
            elif not shown:
                self.ops.append(["dir", cur])
                self.made.add(cur)

    def mask(self, folder: str) -> None:
        """An empty tmpfs over `folder` (inside a bound folder), into which only chosen paths are bound."""
        if self.visible(folder) and os.path.isdir(folder):
            self.ops.append(["tmpfs", folder])
            self.masks.add(folder)


@functools.cache
def root_plan(packages: tuple[str, ...] = PACKAGES) -> tuple[list, list[str]]:
    """The plan of a judged program's root filesystem (for `_launcher._apply`) and its sys.path additions."""
    plan = _Planner()
    plan.ops += [["dir", "/tmp"], ["dir", "/dev"], ["symlink", "/dev/shm", "/tmp"]]
    plan.ops += [["symlink", "/dev/fd", "/proc/self/fd"]]
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        plan.ops.append(["symlink", f"/dev/{name}", f"/proc/self/fd/{fd}"])
    plan.made.update({"/tmp", "/dev"})
    for dev in ("null", "zero", "full", "random", "urandom"):
        plan.expose(f"/dev/{dev}", "dev")
    plan.expose("/proc", "proc")
    exe = os.path.realpath(sys.executable)
    stdlib = sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
    libpython = []
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        libpython = [p for p in {os.path.join(libdir, sysconfig.get_config_var(k) or "-") for k in
                                 ("LDLIBRARY", "INSTSONAME")} if os.path.exists(p)]
    pkg_paths, sys_path = _package_paths(packages)
    site_dirs = _site_dirs()
    dynload = [p for p in sys.path if os.path.basename(p) == "lib-dynload" and os.path.isdir(p)]
    libs = _shared_libraries([exe, *libpython, *_elf_files(dynload + pkg_paths)])
    for path in [sys.executable, exe, *stdlib, *libpython, os.path.join(sys.prefix, "pyvenv.cfg")]:
        plan.expose(path)
    for path, _ in libs:
        if not any(path == s or path.startswith(s + "/") for s in site_dirs):  # those come with their package
            plan.expose(path)
    for folder in site_dirs:
        plan.mask(folder)
    for path in pkg_paths:
        plan.expose(path)
    plan.ops += [["ro", m] for m in sorted(plan.masks)]
    return plan.ops, sys_path


def tmp_plan(ops: list) -> list:
    """The steps of the root's plan under /tmp, carried out again on every run's fresh /tmp."""
    return [op for op in ops if op[1].startswith("/tmp/") and op[1] != "/tmp/sandbox"]


