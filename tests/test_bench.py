"""The benchmark's command line (sky_train.bench): modes, per-mode defaults, the TRL-less exit, and the records
the peer benchmark hands to TRL."""

import json
import sys

import pytest

from sky_train.bench import INSTALL_TRL, main, parse_args, trl_records


def test_each_mode_gets_its_own_defaults_and_modes_exclude_each_other(capsys):
    packing = parse_args([])
    assert (packing.peer, packing.mfu, packing.steps, packing.batch) == (False, False, 6, 32)
    peer = parse_args(["--peer"])
    assert (peer.peer, peer.steps, peer.batch, peer.max_seq_len) == (True, 12, 8, 2048)
    assert peer.trl == ["padded", "padding-free", "packed"]
    assert parse_args(["--peer", "--steps", "3", "--trl", "padded"]).trl == ["padded"]
    assert parse_args(["--peer", "--threads", "1"]).threads == 1
    for bad in (["--peer", "--mfu"], ["--peer", "--trl", "padded,bogus"], ["--peer", "--steps", "1"],
                ["--peer", "--threads", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2
    assert "unknown setting(s) bogus" in capsys.readouterr().err


def test_peer_without_trl_says_how_to_install_it_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "trl", None)  # import trl -> ImportError
    with pytest.raises(SystemExit) as exc:
        main(["--peer", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert INSTALL_TRL in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was trained


def test_trl_gets_each_record_as_prompt_and_the_assistant_reply_as_completion(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"system": "S", "conversations": [{"from": "user", "value": "Q"},
                                                                 {"from": "assistant", "value": "A"}]}) + "\n")
    assert trl_records(path) == [{
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "completion": [{"role": "assistant", "content": "A"}],
    }]


@pytest.mark.slow
def test_the_peer_benchmark_runs_both_trainers_on_a_tiny_model(tmp_path, capsys):
    pytest.importorskip("trl")
    main(["--peer", "--steps", "2", "--batch", "2", "--layers", "1", "--hidden", "64", "--max-seq-len", "1200",
          "--trl", "padded", "--data", str(_few_records(tmp_path)), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "sky_train        packed rows (its defaults)" in out
    assert "TRL SFTTrainer   padded" in out
    assert "goal: sky_train >= 2x TRL's best (padded)" in out


def _few_records(tmp_path):
    from sky_train.embedded import EMBEDDED_DATA

    path = tmp_path / "few.jsonl"
    path.write_text("".join(EMBEDDED_DATA.read_text().splitlines(keepends=True)[:8]))
    return path
