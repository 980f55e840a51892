"""Loss curves (sky_train.plot): the figure holds exactly the numbers of metrics.jsonl, the PNG is real and
written atomically, bad files name themselves, and a training run draws its own loss.png."""

import json
import re
import sys

import pytest

from sky_train.plot import draw, load_series, main, plot_at_end_of_run, plot_runs, read_metrics

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir, rows, tail=""):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return run_dir


def rows(n, lr=1e-3, loss0=5.0):
    return [{"step": s, "loss": loss0 - 0.25 * s, "lr": lr * s / n, "grad_norm": 1.0, "tokens": 100}
            for s in range(1, n + 1)]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # axes, two curves and labels, not an empty canvas


def test_the_figure_plots_exactly_the_file_s_steps_losses_and_lrs(tmp_path):
    run = write_metrics(tmp_path / "run_a", rows(6))
    series = load_series(run)
    fig = draw([series])
    ax_loss, ax_lr = fig.axes
    (loss_line,), (lr_line,) = ax_loss.get_lines(), ax_lr.get_lines()
    assert list(loss_line.get_xdata()) == [1, 2, 3, 4, 5, 6] == list(lr_line.get_xdata())
    assert list(loss_line.get_ydata()) == [4.75, 4.5, 4.25, 4.0, 3.75, 3.5]
    assert list(lr_line.get_ydata()) == pytest.approx([1e-3 * s / 6 for s in range(1, 7)], rel=0, abs=1e-18)
    assert loss_line.get_label() == "run_a"

    out, _ = plot_runs([run])
    assert out == run / "loss.png"
    assert_png(out)
    assert {p.name for p in run.iterdir()} == {"metrics.jsonl", "loss.png"}  # no temporary file left behind


def test_a_torn_last_line_is_skipped_and_a_bad_middle_line_is_named(tmp_path, capsys):
    run = write_metrics(tmp_path / "torn", rows(3), tail='{"step": 4, "loss": 3.')
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]
    assert "metrics.jsonl:4: skipping a torn last line" in capsys.readouterr().err

    bad = tmp_path / "bad" / "metrics.jsonl"
    write_metrics(bad.parent, [])
    lines = [json.dumps(r) for r in rows(3)]
    lines.insert(1, "{not json")
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}:2: bad metrics line"):
        read_metrics(bad)

    missing_key = tmp_path / "nokey" / "metrics.jsonl"
    write_metrics(missing_key.parent, [{"step": 1, "loss": 2.0, "lr": 1e-3}, {"step": 2, "lr": 1e-3}])
    with pytest.raises(ValueError, match=rf"{re.escape(str(missing_key))}:2: expected an object with 'step'"):
        read_metrics(missing_key)


def test_a_missing_or_empty_metrics_file_is_a_clear_error_naming_it(tmp_path):
    missing = re.escape(str(tmp_path / "nothing" / "metrics.jsonl"))
    with pytest.raises(FileNotFoundError, match=rf"{missing}: no such metrics file"):
        plot_runs([tmp_path / "nothing"])
    empty = write_metrics(tmp_path / "empty", [], tail="\n")
    empty_file = re.escape(str(empty / "metrics.jsonl"))
    with pytest.raises(ValueError, match=rf"{empty_file}: no metrics records"):
        plot_runs([empty])
    with pytest.raises(SystemExit, match=rf"sky_train.plot: {empty_file}: no metrics records"):
        main([str(empty)])
    assert not (empty / "loss.png").exists()


def test_several_runs_get_one_curve_each_labelled_by_folder_and_differing_config_keys(tmp_path, monkeypatch, capsys):
    a = write_metrics(tmp_path / "lr_small", rows(4, lr=1e-3))
    b = write_metrics(tmp_path / "lr_big", rows(5, lr=1e-2, loss0=6.0))
    (a / "config.yaml").write_text("run_dir: x\nseed: 0\noptim:\n  lr: 0.001\n  eps: 1.0e-08\n")
    (b / "config.yaml").write_text("run_dir: y\nseed: 0\noptim:\n  lr: 0.01\n  eps: 1.0e-08\n")
    monkeypatch.chdir(tmp_path)
    main([str(a), str(b)])  # several runs: ./loss.png by default
    assert "wrote loss.png" in capsys.readouterr().out
    assert_png(tmp_path / "loss.png")

    out, series = plot_runs([a, b], tmp_path / "cmp" / "both.png")
    assert_png(out)
    assert [s.name for s in series] == ["lr_small (optim.lr=0.001)", "lr_big (optim.lr=0.01)"]
    ax_loss, _ = draw(series).axes
    assert [list(line.get_ydata()) for line in ax_loss.get_lines()] == [[r["loss"] for r in rows(4)],
                                                                     [r["loss"] for r in rows(5, loss0=6.0)]]


def test_without_matplotlib_the_end_of_run_hook_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    run = write_metrics(tmp_path / "run", rows(2))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert plot_at_end_of_run(run) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ['[sky_train] no loss.png: matplotlib is not installed (pip install -e ".[plot]"  (or: pip install '
                   'matplotlib))']
    assert not (run / "loss.png").exists()


def test_a_training_run_draws_its_loss_png_from_its_metrics(tmp_path):
    from sky_train import to_config, train
    cfg = to_config({
        "run_dir": str(tmp_path / "tiny"), "device": "cpu",
        "model": {"tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1}},
        "data": {"max_seq_len": 1200, "max_samples": 6},
        "train": {"global_batch_size": 2, "max_steps": 3, "export_hf": False},
        "fsdp": {"mixed_precision": "fp32", "activation_checkpointing": False},
    })
    result = train(cfg)
    png = tmp_path / "tiny" / "loss.png"
    assert_png(png)
    series = load_series(tmp_path / "tiny")
    assert series.step == [1, 2, 3]
    assert series.loss == pytest.approx(result.losses, rel=1e-12)
