"""Apply activation checkpointing and FSDP2 to a plain model from the outside; load weights into the shards.

Order (as the FSDP2 trainers we admire do it): meta model -> checkpoint-wrap each decoder layer ->
`fully_shard` each decoder layer, the input embedding and the LM head -> `fully_shard` the root (the final
norm; a tied embedding/head stays there too) -> `to_empty` -> load the weights into the shards.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from sky_train.model import LMHeadLoss, SFTModel, reset_rotary_buffers


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
    """Shard every decoder layer, the input embedding and the LM head (each its own unit), then the root.

    bf16: bf16 compute and all-gathers, fp32 master weights, fp32 gradient reduce-scatter (summing many bf16
    gradients loses the small ones). The embedding and the head of a 32B model are 1.56B parameters each:
    as their own units they are gathered only while they run, and the head's reduce-scatter overlaps the
    decoder's backward. A tied embedding and head are one tensor, so they stay together in the root.
    A 2-D mesh ("replicate", "shard") gives hybrid sharding: shards within a group, replicas across groups.
    """
    if cpu_offload and mesh.device_type != "cuda":
        raise ValueError("fsdp.cpu_offload=true needs CUDA devices: parameters already live on the CPU here")
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision == "bf16"
        else MixedPrecisionPolicy()
    )
    offload = CPUOffloadPolicy(pin_memory=True) if cpu_offload else OffloadPolicy()
    kw = dict(mesh=mesh, mp_policy=mp, offload_policy=offload)
    for layer in model.decoder_layers():
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kw)
    if not model.tied_embeddings():
        fully_shard(model.lm.get_input_embeddings(), reshard_after_forward=reshard_after_forward, **kw)
        head = model.lm.get_output_embeddings()
        if isinstance(head, LMHeadLoss):  # its forward holds the whole loss, so one gather serves every chunk
            # Backward starts with it: keep it gathered from its forward to its backward.
            fully_shard(head, reshard_after_forward=False, **kw)
    # The root (final norm, and a tied embedding/head) is needed again right at the start of backward.
    fully_shard(model, reshard_after_forward=False, **kw)


def gradient_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of this rank's sharded gradients, bytes of unsharded gradients FSDP holds between micro-batches
    without a gradient sync): what a rank keeps for gradients between micro-batches."""
    sharded = sum(
        (p.grad._local_tensor if hasattr(p.grad, "_local_tensor") else p.grad).nbytes
        for p in model.parameters() if p.grad is not None
    )
    unsharded = 0
    for module in model.modules():
        state = module._get_fsdp_state() if hasattr(module, "_get_fsdp_state") else None
        group = getattr(state, "_fsdp_param_group", None) if state is not None else None
        for fsdp_param in group.fsdp_params if group is not None else []:
            if fsdp_param.unsharded_accumulated_grad is not None:  # reduce dtype (fp32 under bf16)
                unsharded += fsdp_param.unsharded_accumulated_grad.nbytes
            param = getattr(fsdp_param, "_unsharded_param", None)  # the compute-dtype grad before the upcast
            if param is not None and param.grad is not None:
                unsharded += param.grad.nbytes
    return sharded, unsharded


def materialize_shards(model: nn.Module, device: torch.device, cpu_offload: bool) -> None:
    """Allocate this rank's (uninitialised) shards of the meta model and recompute the rotary buffers; the
    weights come next: `hf_io.load_pretrained_shards`, `load_sharded_weights` or a checkpoint.

    With CPU offload the shards live on the CPU and FSDP moves them to the GPU when it gathers them.
    """
    model.to_empty(device="cpu" if cpu_offload else device)
    if cpu_offload:
        # Only parameters are offloaded; buffers (rotary inv_freq) are used where the compute runs.
        for module in model.modules():
            for name, buf in module.named_buffers(recurse=False):
                module._buffers[name] = buf.to(device)
    reset_rotary_buffers(model)


def load_sharded_weights(model: nn.Module, full_state_dict: dict[str, torch.Tensor] | None) -> None:
    """Fill the materialised shards from rank 0's full state dict (None on other ranks), broadcast.

    For the random initialisation only (the tiny default, `model.pretrained=false`): rank 0 holds the whole
    model here. Pretrained weights go through `hf_io.load_pretrained_shards` (each rank reads its own rows).
    Keys are those of the wrapped transformers model ("model.layers.0...."); they are prefixed with "lm." here.
    """
    sd = {} if full_state_dict is None else {f"lm.{k}": v for k, v in full_state_dict.items()}
    # set_model_state_dict modifies the dict it is given (NOTES.md); `sd` is already a fresh dict.
    set_model_state_dict(
        model, sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True)
    )
