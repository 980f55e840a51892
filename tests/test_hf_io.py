"""Hugging Face weights in and out of the sharded model (hf_io.py), one process: the loader against
transformers' own `from_pretrained`, the export back through `from_pretrained` (bf16: bit-exact), the shard
plan and sizes by hand, the generation config, and the error messages. Two ranks and the memory bounds:
tests/distributed/test_hf_io_ranks.py."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sky_train.dist import init_distributed
from sky_train.hf_io import (
    check_model_dir, end_of_turn_ids, load_pretrained_shards, parse_size, plan_shards, save_hf,
    write_generation_config,
)
from sky_train.model import TINY_QWEN2, SFTModel, build_meta_model
from sky_train.parallel import apply_activation_checkpointing, apply_fsdp, materialize_shards

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}


def tiny_config(tied, **over):
    from transformers import Qwen2Config

    return Qwen2Config(**{**TINY_QWEN2, **SMALL, "tie_word_embeddings": tied, **over})


def save_model_dir(folder, tied, max_shard_size="100KB"):
    """A folder as a hub download looks: bf16 safetensors (sharded with an index unless one file fits),
    config, tokenizer with chat template. Returns transformers' bf16 state dict of it."""
    from transformers import AutoModelForCausalLM

    from sky_train.embedded import load_tiny_tokenizer

    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_config(tiny_config(tied)).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    load_tiny_tokenizer().save_pretrained(folder)
    return folder


def sharded_model(config):
    """The trainer's model as train.py builds it: meta, activation checkpointing, fully_shard, materialised."""
    info = init_distributed("cpu")  # the one-process gloo group (made once per process, then reused)
    model = SFTModel(build_meta_model(config, "sdpa"))
    apply_activation_checkpointing(model)
    apply_fsdp(model, info.mesh, "fp32")
    materialize_shards(model, torch.device("cpu"), False)
    return model


def full_weights(model):
    return {k.removeprefix("lm."): v.full_tensor() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("max_shard_size", ["100KB", "5GB"], ids=["index", "single-file"])
def test_every_weight_is_loaded_as_from_pretrained_loads_it(tmp_path, tied, max_shard_size):
    from transformers import AutoModelForCausalLM

    folder = save_model_dir(tmp_path / "m", tied, max_shard_size)
    assert (folder / "model.safetensors.index.json").exists() == (max_shard_size == "100KB")
    model = sharded_model(tiny_config(tied))
    load_pretrained_shards(model, folder)

    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()
    ours = full_weights(model)
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].dtype == torch.float32
        assert torch.equal(ours[k], ref[k]), k
    if tied:  # one tensor under both names, as in transformers
        assert torch.equal(ours["lm_head.weight"], ours["model.embed_tokens.weight"])


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_export_in_several_files_round_trips_exactly_through_from_pretrained(tmp_path, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sky_train.embedded import load_tiny_tokenizer

    folder = save_model_dir(tmp_path / "m", tied)
    config = tiny_config(tied)
    model = sharded_model(config)
    load_pretrained_shards(model, folder)
    tok = load_tiny_tokenizer()
    out = save_hf(model, config, tok, tmp_path / "hf", "Qwen2ForCausalLM", torch.bfloat16, "60KB")
    assert out == tmp_path / "hf" and not (tmp_path / "hf.tmp").exists()

    index = json.loads((out / "model.safetensors.index.json").read_text())
    names = sorted(set(index["weight_map"].values()))
    assert len(names) >= 3
    assert names == [f"model-{i:05d}-of-{len(names):05d}.safetensors" for i in range(1, len(names) + 1)]
    assert sorted(p.name for p in out.glob("*.safetensors")) == names
    stored = {}
    for name in names:
        part = load_file(str(out / name))
        assert all(index["weight_map"][k] == name for k in part)
        size = sum(t.numel() * t.element_size() for t in part.values())
        assert size <= 60_000 or len(part) == 1  # a tensor over the limit gets a file of its own
        stored.update(part)
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in stored.values())
    assert ("lm_head.weight" in stored) == (not tied)  # tied: the embedding only
    assert all(t.dtype == torch.bfloat16 for t in stored.values())

    saved_config = json.loads((out / "config.json").read_text())
    assert saved_config["architectures"] == ["Qwen2ForCausalLM"] and saved_config["dtype"] == "bfloat16"
    assert AutoTokenizer.from_pretrained(out).chat_template == tok.chat_template
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).state_dict()
    original = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).state_dict()
    assert set(exported) == set(original)
    for k in original:
        assert torch.equal(exported[k], original[k]), k


def test_small_export_is_one_model_safetensors_without_index(tmp_path):
    from sky_train.embedded import load_tiny_tokenizer

    config = tiny_config(False)
    model = sharded_model(config)
    load_pretrained_shards(model, save_model_dir(tmp_path / "m", False))
    out = save_hf(model, config, load_tiny_tokenizer(), tmp_path / "hf", "Qwen2ForCausalLM", torch.float32)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert not (out / "model.safetensors.index.json").exists()
    weights = load_file(str(out / "model.safetensors"))
    ours = full_weights(model)
    assert set(weights) == set(ours) and all(torch.equal(weights[k], ours[k]) for k in weights)  # fp32: exact


def test_export_replaces_the_folder_only_when_complete(tmp_path):
    from sky_train.embedded import load_tiny_tokenizer

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    config = tiny_config(False)
    model = sharded_model(config)
    load_pretrained_shards(model, save_model_dir(tmp_path / "m", False))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "previous").write_text("an earlier export")
    with pytest.raises(OSError, match="disk full"):
        save_hf(model, config, BrokenTokenizer(), tmp_path / "hf", "Qwen2ForCausalLM")
    assert (tmp_path / "hf" / "previous").exists()  # the earlier export is untouched
    save_hf(model, config, load_tiny_tokenizer(), tmp_path / "hf", "Qwen2ForCausalLM")
    assert not (tmp_path / "hf" / "previous").exists() and not (tmp_path / "hf.tmp").exists()


def test_shard_plan_and_sizes_by_hand():
    sizes = {"a": 4, "b": 4, "c": 10, "d": 1, "e": 3, "f": 8}
    # a+b fill 8; c alone exceeds it (a file of its own); d+e=4, f would make 12: a new file.
    assert plan_shards(sizes, 8) == [["a", "b"], ["c"], ["d", "e"], ["f"]]
    assert plan_shards(sizes, 100) == [list(sizes)]
    assert parse_size("5GB") == 5_000_000_000 and parse_size("256MB") == 256_000_000
    assert parse_size("1.5KiB") == 1536 and parse_size(123) == 123
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size("5 gigs")


def test_generation_config_stops_where_the_chat_template_ends_a_turn(tmp_path):
    from sky_train.embedded import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    im_end, endoftext = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert end_of_turn_ids(tok) == [im_end]  # the eos is the template's <|im_end|>
    assert end_of_turn_ids(tok, "<|endoftext|>") == [im_end, endoftext]  # the Sky-T1 terminator too
    base_tok = load_tiny_tokenizer()
    base_tok.eos_token = "<|endoftext|>"  # as a Qwen base model's tokenizer
    assert end_of_turn_ids(base_tok) == [endoftext, im_end]

    write_generation_config(tmp_path, base_tok, None, None)  # no base model: a new one
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [endoftext, im_end] and gen["pad_token_id"] == tok.pad_token_id

    base = tmp_path / "base"
    base.mkdir()
    text = json.dumps({"eos_token_id": [im_end, endoftext], "temperature": 0.7, "top_p": 0.8}, indent=1)
    (base / "generation_config.json").write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    write_generation_config(out, tok, str(base), "<|endoftext|>")
    assert (out / "generation_config.json").read_text() == text  # the base model's, byte for byte
    (base / "generation_config.json").write_text(json.dumps({"eos_token_id": im_end, "temperature": 0.7}))
    write_generation_config(out, tok, str(base), "<|endoftext|>")  # lacks the trained terminator: added
    assert json.loads((out / "generation_config.json").read_text()) == {
        "eos_token_id": [im_end, endoftext], "temperature": 0.7}


def test_export_copies_the_base_models_generation_config(tmp_path):
    from sky_train.embedded import load_tiny_tokenizer

    folder = save_model_dir(tmp_path / "m", False)
    gen = {"eos_token_id": [1023, 1021], "pad_token_id": 1021, "temperature": 0.7, "top_k": 20}
    (folder / "generation_config.json").write_text(json.dumps(gen))
    config = tiny_config(False)
    model = sharded_model(config)
    load_pretrained_shards(model, folder)
    out = save_hf(model, config, load_tiny_tokenizer(), tmp_path / "hf", "Qwen2ForCausalLM", base_dir=str(folder))
    assert json.loads((out / "generation_config.json").read_text()) == gen


def _rewrite(folder: Path, name: str, change) -> None:
    tensors = load_file(str(folder / name))
    change(tensors)
    save_file(tensors, str(folder / name), metadata={"format": "pt"})


def test_missing_unexpected_and_misshapen_tensors_name_the_file_and_the_key(tmp_path):
    config = tiny_config(False)

    folder = save_model_dir(tmp_path / "missing", False)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    key = "model.layers.1.mlp.up_proj.weight"
    _rewrite(folder, index["weight_map"].pop(key), lambda t: t.pop(key))
    index_path.write_text(json.dumps(index))
    with pytest.raises(KeyError, match=re.escape(f"{index_path}: no tensor '{key}'")):
        load_pretrained_shards(sharded_model(config), folder)

    folder = save_model_dir(tmp_path / "unexpected", False, "5GB")
    _rewrite(folder, "model.safetensors", lambda t: t.update({"model.layers.7.mlp.up_proj.weight": torch.zeros(2)}))
    with pytest.raises(KeyError, match=re.escape(f"{folder / 'model.safetensors'}: unexpected tensor 'model.layers.7")):
        load_pretrained_shards(sharded_model(config), folder)

    folder = save_model_dir(tmp_path / "shape", False, "5GB")
    message = f"{folder / 'model.safetensors'}: tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128, 64]"
    with pytest.raises(ValueError, match=re.escape(message) + r", the model's .* has \[96, 64\]"):
        load_pretrained_shards(sharded_model(tiny_config(False, intermediate_size=96)), folder)

    folder = save_model_dir(tmp_path / "lost_file", False)
    (folder / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="lists model-00002-of-00004.safetensors, which is not in"):
        load_pretrained_shards(sharded_model(config), folder)


def test_tied_checkpoint_may_also_store_the_head(tmp_path):
    """Some tied checkpoints store lm_head.weight as well: it is the embedding, nothing unexpected."""
    folder = save_model_dir(tmp_path / "m", True, "5GB")

    def add_head(tensors):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()

    _rewrite(folder, "model.safetensors", add_head)
    model = sharded_model(tiny_config(True))
    load_pretrained_shards(model, folder)
    expected = load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"].float()
    assert torch.equal(full_weights(model)["lm_head.weight"], expected)


def test_a_wrong_model_folder_is_named_with_what_it_lacks(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        check_model_dir(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: the folder lacks config.json; \*.safetensors .*; tokenizer"):
        check_model_dir(str(empty))
    (empty / "config.json").write_text("{}")
    check_model_dir(str(empty), weights=False, tokenizer_dir=str(save_model_dir(tmp_path / "m", False)))
    with pytest.raises(FileNotFoundError, match=r"lacks \*.safetensors weights"):
        check_model_dir(str(empty), tokenizer_dir=str(tmp_path / "m"))
    check_model_dir(str(tmp_path / "m"))
    check_model_dir(None)  # the embedded default


def test_train_names_an_empty_model_folder_before_loading_a_tokenizer(tmp_path):
    from sky_train import to_config, train

    (tmp_path / "empty").mkdir()
    cfg = to_config({"run_dir": str(tmp_path / "run"), "device": "cpu",
                     "model": {"name_or_path": str(tmp_path / "empty")}})
    with pytest.raises(FileNotFoundError, match="empty: the folder lacks config.json"):
        train(cfg)
