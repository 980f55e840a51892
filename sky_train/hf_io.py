"""Hugging Face weights in and out of the FSDP2-sharded model, one shard at a time (scales to 32B).

Load: every rank reads from the model directory's safetensors files (index json or a single file) only the
rows of each tensor that its own shard holds (`safe_open(...).get_slice`), casts them to the parameter dtype
and copies them into the local shard. No process ever holds the whole model; a rank's host memory peaks
near its own fp32 shard (on the CPU under `fsdp.cpu_offload`) plus its rows of one input file.

Export: every rank casts its shard of a tensor to the export dtype and gathers the tensor
(`DTensor.full_tensor()`), tensor by tensor, in the same order everywhere; rank 0 appends each one to the
safetensors file it belongs to, whose header is planned up front from the parameter shapes. Rank 0 holds
one tensor at a time. Files are named as
transformers names them (`model-00001-of-00004.safetensors` + `model.safetensors.index.json`, or a single
`model.safetensors`), written into `<out>.tmp` with config, tokenizer and generation config, and renamed
into place when complete.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# Rotary inv_freq buffers that old checkpoints stored; the model recomputes them (transformers skips them too).
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")
_ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def check_model_dir(path: str | None, weights: bool = True, tokenizer_dir: str | None = None) -> None:
    """Fail early, naming the folder and what is missing, when `model.name_or_path` is not a usable local
    Hugging Face model folder (config.json, *.safetensors when `weights`, tokenizer files unless a separate
    `tokenizer_dir` has them). None (the embedded tiny default) passes."""
    if path is None:
        return
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"model.name_or_path={path}: no such folder (a local Hugging Face model folder is needed; download "
            f"one first, e.g. `hf download Qwen/Qwen2.5-32B-Instruct --local-dir {path}`)"
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if weights and not (folder / INDEX).is_file() and not any(folder.glob("*.safetensors")):
        missing.append(f"*.safetensors weights (or {INDEX}); model.pretrained=false trains from random weights")
    tok_folder = Path(tokenizer_dir) if tokenizer_dir else folder
    if not any((tok_folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"tokenizer files in {tok_folder} (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise FileNotFoundError(f"model.name_or_path={path}: the folder lacks " + "; ".join(missing))


# ---- load -------------------------------------------------------------------------------------------------


def weight_map(model_dir: str | Path) -> dict[str, str]:
    """{tensor name: file name} of a model folder: from the index when there is one, else from the headers
    of its safetensors files."""
    folder = Path(model_dir)
    index = folder / INDEX
    if index.is_file():
        try:
            mapping = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"{index}: not a safetensors index (no readable 'weight_map'): {e}") from None
        for name in sorted(set(mapping.values())):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{index}: lists {name}, which is not in {folder}")
        return dict(mapping)
    files = [folder / SINGLE] if (folder / SINGLE).is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights and no {INDEX}")
    from safetensors import safe_open

    mapping = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key in mapping:
                    raise ValueError(f"{folder}: tensor {key!r} is in both {mapping[key]} and {file.name}")
                mapping[key] = file.name
    return mapping


def local_shard_slices(tensor: torch.Tensor) -> tuple[slice, ...]:
    """The global index ranges of this rank's shard of `tensor` (a DTensor on a 1-D `Shard(0)` mesh or a 2-D
    `(Replicate(), Shard(0))` hybrid mesh, or a plain tensor: all of it)."""
    if isinstance(tensor, DTensor):
        shape, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    else:
        shape, offset = tuple(tensor.shape), (0,) * tensor.dim()
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def load_pretrained_shards(model: nn.Module, model_dir: str | Path, prefix: str = "lm.") -> None:
    """Fill this rank's shards of the materialised (`parallel.materialize_shards`), sharded `model` from the
    Hugging Face safetensors in `model_dir`, reading only its own rows. Every rank checks the names and
    shapes first (the same verdict everywhere), so a bad folder fails on all ranks before anything is read.

    `prefix`: what the model's state-dict keys carry before the transformers names ("lm." for SFTModel).
    Tied embeddings: a checkpoint that stores only `model.embed_tokens.weight` fills `lm_head.weight` too.
    """
    folder = Path(model_dir)
    files = weight_map(folder)
    where = folder / INDEX if (folder / INDEX).is_file() else folder
    targets = _hf_state_dict(model, prefix)
    lm = model.get_submodule(prefix.rstrip(".")) if prefix else model
    tied = bool(getattr(getattr(lm, "config", None), "tie_word_embeddings", False))

    source = {}  # model key -> checkpoint key
    for key, t in targets.items():
        if t.is_meta:
            raise RuntimeError(f"{key} is on the meta device: call parallel.materialize_shards(model, ...) first")
        if key in files:
            source[key] = key
        elif tied and key == "lm_head.weight" and "model.embed_tokens.weight" in files:
            source[key] = "model.embed_tokens.weight"
    missing = sorted(set(targets) - set(source))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise KeyError(f"{where}: no tensor {', '.join(map(repr, missing[:5]))}{more}, which the model needs")
    unexpected = sorted(
        k for k in files
        if k not in targets and not _IGNORED.match(k) and not (tied and k == "lm_head.weight")
    )
    if unexpected:
        more = f" (and {len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
        raise KeyError(f"{folder / files[unexpected[0]]}: unexpected tensor {unexpected[0]!r}{more}: the model "
                       "has no such parameter (a checkpoint of another architecture or config?)")

    from safetensors import safe_open

    by_file: dict[str, list[str]] = {}
    for key in targets:
        by_file.setdefault(files[source[key]], []).append(key)
    for name in sorted(by_file):  # the shapes, from the headers, before anything is read
        with safe_open(str(folder / name), framework="pt", device="cpu") as f:
            for key in by_file[name]:
                shape = list(f.get_slice(source[key]).get_shape())
                if shape != list(targets[key].shape):
                    raise ValueError(f"{folder / name}: tensor {source[key]!r} has shape {shape}, the model's "
                                     f"{key} has {list(targets[key].shape)}")
    # One file open at a time: the mapped pages a rank touched (its rows) count in its RSS until it closes.
    filled: set[int] = set()  # storages already filled (a tied head is the embedding's tensor)
    for name in sorted(by_file):
        with safe_open(str(folder / name), framework="pt", device="cpu") as f, torch.no_grad():
            for key in by_file[name]:
                target = targets[key]
                view = f.get_slice(source[key])
                local = target.to_local() if isinstance(target, DTensor) else target
                index = local_shard_slices(target)
                if tuple(s.stop - s.start for s in index) != tuple(local.shape):
                    raise RuntimeError(f"{key}: local shard {tuple(local.shape)} is not the computed {index}")
                if local.numel() == 0 or local.data_ptr() in filled:
                    continue
                filled.add(local.data_ptr())
                rows = view[index] if index else f.get_tensor(source[key])  # (local shape), file dtype
                local.copy_(rows)  # casts to the parameter dtype (fp32) and moves to its device
                del rows


def _hf_state_dict(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The model's state dict (DTensor shards, no copies) keyed by transformers names. Checkpoint wrappers
    strip their `_checkpoint_wrapped_module.` part in their own state-dict hook."""
    sd = model.state_dict()
    return {k.removeprefix(prefix): v for k, v in sd.items()}


# ---- export -----------------------------------------------------------------------------------------------


def parse_size(size: int | str) -> int:
    """Bytes of "5GB" (10**9, as huggingface_hub counts), "500MiB" (2**20), or an int."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", size, re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size={size!r}: expected e.g. '5GB', '256MB' or '500MiB'")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def plan_shards(sizes: dict[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Consecutive groups of tensor names, each at most `max_shard_bytes` (a larger tensor alone), in the
    given order, so that a file is complete as soon as its last tensor has been gathered."""
    shards: list[list[str]] = [[]]
    filled = 0
    for key, size in sizes.items():
        if shards[-1] and filled + size > max_shard_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(key)
        filled += size
    return [s for s in shards if s]


def shard_filenames(n: int) -> list[str]:
    return [SINGLE] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def save_hf(
    model: nn.Module,
    model_config: Any,
    tokenizer: Any,
    out_dir: Path,
    architecture: str,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_size: int | str = "5GB",
    base_dir: str | None = None,
    assistant_end: str | None = None,
    prefix: str = "lm.",
) -> Path | None:
    """Export the sharded `model` as a Hugging Face model folder at `out_dir`. A collective: every rank calls
    it; rank 0 writes and gets `out_dir`, the others None.

    Also written: the config (`dtype`, `architectures`), the tokenizer with its chat template, and
    `generation_config.json`: the base model's (`base_dir`) when it has one, else one whose `eos_token_id`
    lists the tokenizer's eos and the chat template's end-of-turn token (and `assistant_end`), so that
    generation stops where training taught the model to stop.
    """
    if dtype not in _ST_DTYPE:
        raise ValueError(f"export dtype {dtype}: expected one of {list(_ST_DTYPE)}")
    rank = dist.get_rank() if dist.is_initialized() else 0
    tied = bool(getattr(model_config, "tie_word_embeddings", False))
    tensors = {k: v for k, v in _hf_state_dict(model, prefix).items() if not (tied and k == "lm_head.weight")}
    itemsize = torch.empty((), dtype=dtype).element_size()
    sizes = {k: math.prod(v.shape) * itemsize for k, v in tensors.items()}
    shards = plan_shards(sizes, parse_size(max_shard_size))
    names = shard_filenames(len(shards))

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    gathered = _gather_each(tensors, dtype)  # every rank iterates it: one collective per tensor, same order
    for name, keys in zip(names, shards):
        if rank == 0:
            with open(tmp / name, "wb") as f:
                _write_safetensors(f, keys, {k: tuple(tensors[k].shape) for k in keys}, dtype, gathered)
        else:
            for _ in keys:
                next(gathered)
    if rank != 0:
        dist.barrier()
        return None

    if len(names) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": {k: name for name, keys in zip(names, shards) for k in keys}}
        (tmp / INDEX).write_text(json.dumps(index, indent=2))
    config = type(model_config).from_dict(model_config.to_dict())
    config.dtype = dtype  # what the weights are stored in; transformers and vLLM load in it by default
    config.architectures = [architecture]
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_generation_config(tmp, tokenizer, base_dir, assistant_end)

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    if dist.is_initialized():
        dist.barrier()
    return out_dir


def _gather_each(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """Each tensor whole, in `dtype`, in order; all ranks must consume the iterator in step (a collective per
    item). The shards are cast before the all-gather: the same values, half the bytes moved and held."""
    for t in tensors.values():
        if isinstance(t, DTensor):
            # With CPU offload the shards live on the CPU: gather where the mesh's collectives run.
            if t.device.type != t.device_mesh.device_type:
                t = t.to(t.device_mesh.device_type)
            yield t.detach().to(dtype).full_tensor()
        else:
            yield t.detach().to(dtype)


def _write_safetensors(
    f: Any, keys: list[str], shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, gathered: Iterator[torch.Tensor]
) -> None:
    """A safetensors file written as the tensors arrive: the header (names, shapes, byte offsets) is known
    from the shapes, so each tensor's bytes are appended and dropped. Format: u64-le header length, JSON
    header padded with spaces to 8 bytes, then the raw little-endian data."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for k in keys:
        n = math.prod(shapes[k]) * itemsize
        header[k] = {"dtype": _ST_DTYPE[dtype], "shape": list(shapes[k]), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for k in keys:
        t = next(gathered)
        if tuple(t.shape) != shapes[k]:
            raise RuntimeError(f"{k}: gathered shape {tuple(t.shape)}, planned {shapes[k]}")
        data = t.contiguous().cpu()  # export-dtype bytes to the host (from the GPU, where it was gathered)
        del t
        f.write(data.reshape(-1).view(torch.uint8).numpy().data)
        del data
    if f.tell() != 8 + len(raw) + offset:
        raise RuntimeError(f"{f.name}: wrote {f.tell()} bytes, planned {8 + len(raw) + offset}")


def end_of_turn_ids(tokenizer: Any, assistant_end: str | None = None) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's eos, the first special token the chat template
    writes after an assistant message (Qwen: <|im_end|>), and `assistant_end` when it is one token."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    mark = "\x00sky-end-of-turn\x00"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "1"}, {"role": "assistant", "content": mark}], tokenize=False
        )
    except Exception:  # a template that cannot render this conversation: the eos alone
        text = ""
    after = text[text.rfind(mark) + len(mark):] if mark in text else ""
    special = {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    first = tokenizer.encode(after, add_special_tokens=False)[:1] if after else []
    ids += [i for i in first if i in special]
    if assistant_end:
        end = tokenizer.encode(assistant_end, add_special_tokens=False)
        if len(end) == 1:
            ids.append(end[0])
    return list(dict.fromkeys(ids))


def write_generation_config(out: Path, tokenizer: Any, base_dir: str | None, assistant_end: str | None) -> None:
    """The base model's generation_config.json (its eos list extended by any end-of-turn id it lacks), or a
    new one for a model without (the tiny default)."""
    ends = end_of_turn_ids(tokenizer, assistant_end)
    base = Path(base_dir) / "generation_config.json" if base_dir else None
    if base is not None and base.is_file():
        gen = json.loads(base.read_text())
        eos = gen.get("eos_token_id")
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if all(i in eos for i in ends):
            shutil.copyfile(base, out / "generation_config.json")
            return
        gen["eos_token_id"] = eos + [i for i in ends if i not in eos]
    else:
        gen = {"eos_token_id": ends if len(ends) != 1 else ends[0]}
        if tokenizer.bos_token_id is not None:
            gen["bos_token_id"] = int(tokenizer.bos_token_id)
        if tokenizer.pad_token_id is not None:
            gen["pad_token_id"] = int(tokenizer.pad_token_id)
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
