"""Generation backends shared by sky_data (teacher traces) and sky_eval (benchmark responses).

    from sky_data.backends import make_backend, Request, SamplingConfig
    backend = make_backend("vllm", model="path/to/hf_dir", tensor_parallel_size=8)
    gens = backend.generate([Request([{"role": "user", "content": "1+1?"}], key="q1")], SamplingConfig(n=4))

Backends: `vllm` (offline engine), `openai` (any OpenAI-compatible server, or several replicas), `ray` (Ray Data's
LLM batch processors over a Ray cluster), `transformers` (CPU-capable, small models), `replay` (saved responses).
"""

from __future__ import annotations

from typing import Any

from sky_data.backends.base import Backend, Generation, OnResult, Request, SamplingConfig, request_seed

BACKENDS = ("vllm", "openai", "ray", "transformers", "replay")


def make_backend(name: str, **kwargs: Any) -> Backend:
    """The backend `name`, built with its own keyword arguments (see each class). Heavy imports happen here."""
    if name == "vllm":
        from sky_data.backends.vllm import VLLMBackend

        return VLLMBackend(**kwargs)
    if name == "openai":
        from sky_data.backends.openai import OpenAIBackend

        return OpenAIBackend(**kwargs)
    if name == "ray":
        from sky_data.backends.ray import RayBackend

        return RayBackend(**kwargs)
    if name == "transformers":
        from sky_data.backends.hf import TransformersBackend

        return TransformersBackend(**kwargs)
    if name == "replay":
        from sky_data.backends.replay import ReplayBackend

        return ReplayBackend(**kwargs)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Generation", "OnResult", "Request", "SamplingConfig", "make_backend", "request_seed"]
