"""Loss and learning-rate curves of one or more runs, drawn from their metrics.jsonl.

    python -m sky_train.plot runs/default                      # -> runs/default/loss.png
    python -m sky_train.plot runs/a runs/b --out compare.png   # one curve per run (default: ./loss.png)

A run draws its own `<run_dir>/loss.png` at the end when `metrics.plot` is true. matplotlib is an optional
extra (`pip install -e ".[plot]"`); without it training only prints how to install it. Curves are labelled by
the run folder's name and, when several runs are compared, the config keys whose values differ between them
(read from each run's config.yaml).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINT = 'pip install -e ".[plot]"  (or: pip install matplotlib)'
# Keys that always differ between runs and say nothing about the setting.
_IGNORED_KEYS = {"run_dir", "run_name"}
_MAX_LABEL_KEYS = 3


@dataclass
class RunSeries:
    name: str  # the label of the run's curves
    path: Path  # the metrics.jsonl the series were read from
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, one per logged step.

    A last line that does not parse is skipped (a run killed while writing it, since JsonlLogger appends one
    line at a time); a bad line anywhere else raises, naming the file and the line. A missing file or one
    without a record raises, naming the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file (is this a sky_train run folder?)")
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            if i == last:
                print(f"[sky_train.plot] {path}:{i + 1}: skipping a torn last line", file=sys.stderr)
                break
            raise ValueError(f"{path}:{i + 1}: bad metrics line ({err}): {line[:80]!r}") from err
        if not isinstance(record, dict) or not all(k in record for k in ("step", "loss", "lr")):
            raise ValueError(f"{path}:{i + 1}: expected an object with 'step', 'loss' and 'lr': {line[:80]!r}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no metrics records (the run logged no step yet)")
    return records


def load_series(run_dir: Path, name: str | None = None) -> RunSeries:
    """Step, loss and lr of a run; a step logged twice keeps its last record (a resumed run's redo)."""
    path = Path(run_dir) / "metrics.jsonl"
    by_step = {int(r["step"]): r for r in read_metrics(path)}
    series = RunSeries(name or Path(run_dir).resolve().name, path)
    for step in sorted(by_step):
        r = by_step[step]
        series.step.append(step)
        series.loss.append(float("nan") if r["loss"] is None else float(r["loss"]))
        series.lr.append(float("nan") if r["lr"] is None else float(r["lr"]))
    return series


def run_labels(run_dirs: list[Path]) -> list[str]:
    """The folder name of each run, plus up to three config keys that differ between the runs."""
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):  # same folder name in different places: the path tells them apart
        names = [str(d) for d in run_dirs]
    if len(run_dirs) < 2:
        return names
    configs = [_flat_config(Path(d) / "config.yaml") for d in run_dirs]
    keys = sorted({k for c in configs for k in c} - _IGNORED_KEYS)
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1][:_MAX_LABEL_KEYS]
    if not differing:
        return names
    return [f"{n} ({', '.join(f'{k}={c.get(k)}' for k in differing)})" for n, c in zip(names, configs)]


def _flat_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", OmegaConf.to_container(OmegaConf.load(path)))
    return out


def draw(series: list[RunSeries]) -> Any:
    """A two-panel figure: loss (top) and learning rate (bottom) against the optimiser step, one line per run.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for s in series:
        marker = "o" if len(s.step) <= 30 else None
        line = ax_loss.plot(s.step, s.loss, label=s.name, marker=marker, markersize=3)[0]
        ax_lr.plot(s.step, s.lr, label=s.name, color=line.get_color())
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize="small")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.grid(alpha=0.3)
    fig.suptitle("training loss and learning rate")
    return fig


def save_png(fig: Any, out: Path) -> Path:
    """Write the figure as PNG atomically (a temporary file in the same folder, then a rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def plot_runs(run_dirs: list[str | Path], out: str | Path | None = None) -> tuple[Path, list[RunSeries]]:
    """Draw the runs' curves into `out` (default: <run_dir>/loss.png for one run, ./loss.png for several)."""
    if not run_dirs:
        raise ValueError("give at least one run folder")
    dirs = [Path(d) for d in run_dirs]
    if out is None:
        out = dirs[0] / "loss.png" if len(dirs) == 1 else Path("loss.png")
    series = [load_series(d, name) for d, name in zip(dirs, run_labels(dirs))]
    return save_png(draw(series), Path(out)), series


def plot_at_end_of_run(run_dir: Path) -> Path | None:
    """The end-of-run hook (rank 0): draw <run_dir>/loss.png; never fails the run that just finished."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"[sky_train] no loss.png: matplotlib is not installed ({INSTALL_HINT})", flush=True)
        return None
    try:
        out, _ = plot_runs([run_dir])
    except (OSError, ValueError) as err:  # a plotting problem must not turn a finished run into a failed one
        print(f"[sky_train] no loss.png: {err}", flush=True)
        return None
    print(f"[sky_train] loss curve: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders holding metrics.jsonl")
    ap.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/loss.png for one run, else ./loss.png)")
    args = ap.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(f"sky_train.plot needs matplotlib: {INSTALL_HINT}") from None
    try:
        out, series = plot_runs(args.run_dirs, args.out)
    except (OSError, ValueError) as err:
        raise SystemExit(f"sky_train.plot: {err}") from None
    for s in series:
        print(f"{s.name}: {len(s.step)} steps, loss {s.loss[0]:.4f} -> {s.loss[-1]:.4f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
