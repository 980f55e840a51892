"""Apply activation checkpointing and FSDP2 to a plain model from the outside; load weights into the shards.

Order (as the FSDP2 trainers we admire do it): meta model -> checkpoint-wrap each decoder layer ->
`fully_shard` each decoder layer -> `fully_shard` the root (embeddings, final norm and LM head stay in the
root unit, which also keeps tied embeddings correct) -> `to_empty` -> broadcast rank 0's weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from sky_train.model import SFTModel, reset_rotary_buffers


def apply_activation_checkpointing(model: SFTModel) -> None:
    """Recompute each decoder layer in backward: only layer inputs stay alive (~T x hidden per layer)."""
    layers = model.decoder_layers()
    for i, layer in enumerate(layers):
        # Non-reentrant checkpointing works with FSDP2's hooks and with kwargs; state-dict keys keep their
        # names (the wrapper strips its `_checkpoint_wrapped_module` prefix).
        layers[i] = checkpoint_wrapper(layer, checkpoint_impl=CheckpointImpl.NO_REENTRANT, preserve_rng_state=False)


def apply_fsdp(
    model: SFTModel,
    mesh: DeviceMesh,
    mixed_precision: str = "bf16",
    cpu_offload: bool = False,
    reshard_after_forward: bool = True,
) -> None:
    """Shard every decoder layer, then the root. bf16: bf16 compute and all-gathers, fp32 master weights,
    fp32 gradient reduce-scatter (summing many bf16 gradients loses the small ones)."""
    if cpu_offload and mesh.device_type != "cuda":
        raise ValueError("fsdp.cpu_offload=true needs CUDA devices: parameters already live on the CPU here")
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision == "bf16"
        else MixedPrecisionPolicy()
    )
    offload = CPUOffloadPolicy(pin_memory=True) if cpu_offload else OffloadPolicy()
    for layer in model.decoder_layers():
        fully_shard(layer, mesh=mesh, mp_policy=mp, offload_policy=offload, reshard_after_forward=reshard_after_forward)
    # The root's parameters are needed again right at the start of backward: do not reshard them.
    fully_shard(model, mesh=mesh, mp_policy=mp, offload_policy=offload, reshard_after_forward=False)


def load_sharded_weights(
    model: nn.Module, full_state_dict: dict[str, torch.Tensor] | None, device: torch.device, cpu_offload: bool
) -> None:
    """Materialise the (meta) sharded model and fill it from rank 0's full state dict (None on other ranks).

    Keys are those of the wrapped transformers model ("model.layers.0...."); they are prefixed with "lm."
    here. With CPU offload the shards live on the CPU and FSDP moves them to the GPU when it gathers them.
    """
    model.to_empty(device="cpu" if cpu_offload else device)
    if cpu_offload:
        # Only parameters are offloaded; buffers (rotary inv_freq) are used where the compute runs.
        for module in model.modules():
            for name, buf in module.named_buffers(recurse=False):
                module._buffers[name] = buf.to(device)
    reset_rotary_buffers(model)
    sd = {} if full_state_dict is None else {f"lm.{k}": v for k, v in full_state_dict.items()}
    # set_model_state_dict modifies the dict it is given (NOTES.md); `sd` is already a fresh dict.
    set_model_state_dict(
        model, sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True)
    )


def gather_full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """All ranks call this; rank 0 gets the full fp32 state dict on the CPU, keyed like the transformers
    model, other ranks an empty dict."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("lm."): v for k, v in sd.items()}
