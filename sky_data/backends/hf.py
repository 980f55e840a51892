"""Generation with plain transformers: small models, CPU machines, and a reference the fast engines are tested
against. Not for 32B teacher runs (use `vllm` or `openai`).

    from sky_data.backends import make_backend
    backend = make_backend("transformers", model="runs/tiny/hf", batch_size=8)

What holds:
- Prompts are the tokenizer's chat template with the generation prompt, tokenized without extra special tokens
  (as vLLM's `LLM.chat` does). Batches are left-padded; rows are grouped by prompt length to pad little.
- Sampling settings are exactly the SamplingConfig: the model's generation_config.json sampling defaults
  (top_k, repetition_penalty, ...) are NOT applied, as with vLLM given explicit SamplingParams; its eos ids are.
- Seeds: response i of a request is drawn from its own torch.Generator seeded `request_seed(seed, key) + i`
  (vLLM seeds the i-th sample of a seeded request the same way), by a logits processor that samples each row
  with its row's generator. So a response depends on its request, seed and index, not on the other rows of its
  batch, the batch size or n, up to float rounding from padding, and the global torch RNG is left untouched.
- A response ends at an eos id of the tokenizer or generation_config ("stop"; the eos is counted as a token but
  is not in the text, as in vLLM), at a stop string, cut off with everything after it ("stop"), or after
  max_tokens new tokens ("length").
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList

from sky_data.backends.base import Generation, OnResult, Request, SamplingConfig, request_seed

__all__ = ["TransformersBackend", "find_stop"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        # bf16 matmuls on CPU are slow and lossy; on GPU they are what the model was trained in
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return resolved


def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Where the earliest stop string starts in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


class _RowSampler(LogitsProcessor):
    """Samples row b's next token with generator b, then leaves only that token for generate's argmax.

    HF's own sampler draws all rows from the global RNG at once, so a row's tokens would depend on its batch;
    here each row consumes exactly one draw of its own generator per step."""

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature  # (B, V)
        if self.top_p < 1.0:
            # nucleus: keep the smallest top set whose mass reaches top_p (the top token always survives)
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            mass_before = sorted_logits.softmax(dim=-1).cumsum(dim=-1) - sorted_logits.softmax(dim=-1)
            sorted_logits[mass_before >= self.top_p] = float("-inf")
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        chosen = torch.cat([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen), device=scores.device), chosen] = 0.0
        return out


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str, dtype: str | torch.dtype = "auto", device: str = "auto", batch_size: int = 8,
                 tokenizer: str | None = None, trust_remote_code: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_path = str(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or self.model_path,
                                                       trust_remote_code=trust_remote_code)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of {tokenizer or self.model_path} has no chat template; requests are "
                             "chat messages, so give a tokenizer that has one (tokenizer=...)")
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype,
                                                          trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()

        eos: list[int] = []
        for ids in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            for i in ([ids] if isinstance(ids, int) else ids or []):
                if i not in eos:
                    eos.append(int(i))
        if not eos:
            raise ValueError(f"{self.model_path}: neither the tokenizer nor generation_config names an eos token")
        self.eos_ids = eos
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else eos[0]
        # a neutral generation config: only SamplingConfig's settings and the eos ids apply (see the docstring)
        self.model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=self.pad_id)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        greedy = sampling.temperature == 0
        prompts = [self.prompt_ids(r.messages) for r in requests]
        # one row per response to draw; greedy responses are all the same, so one row serves all n
        rows = [(i, j) for i in range(len(requests)) for j in range(1 if greedy else sampling.n)]
        rows.sort(key=lambda row: -len(prompts[row[0]]))  # stable: a request's rows stay together
        done: dict[tuple[int, int], tuple[str, str, int]] = {}
        bar = tqdm(total=len(rows), desc="generate", disable=not progress)
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            seeds = [request_seed(sampling.seed, requests[i].key) + j for i, j in batch]
            for row, result in zip(batch, self._generate_batch([prompts[i] for i, _ in batch], seeds, sampling)):
                done[row] = result
            bar.update(len(batch))
        bar.close()

        out = []
        for i in range(len(requests)):
            results = [done[(i, 0 if greedy else j)] for j in range(sampling.n)]
            out.append(Generation(texts=[r[0] for r in results], finish_reasons=[r[1] for r in results],
                                  prompt_tokens=len(prompts[i]), completion_tokens=[r[2] for r in results]))
        if on_result is not None:
            for i, g in enumerate(out):
                on_result(i, g)
        return out

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int],
                        sampling: SamplingConfig) -> list[tuple[str, str, int]]:
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)  # (B, T)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                                      device=self.device)  # (B, T)
        kwargs: dict[str, Any] = {}
        if sampling.temperature > 0:
            gens = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
            kwargs["logits_processor"] = LogitsProcessorList(
                [_RowSampler(gens, sampling.temperature, sampling.top_p)])
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        sequences = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                        max_new_tokens=sampling.max_tokens, num_return_sequences=1, **kwargs)
        return [self._finish(seq[width:].tolist(), sampling) for seq in sequences]

    def _finish(self, ids: list[int], sampling: SamplingConfig) -> tuple[str, str, int]:
        """(text, finish_reason, completion tokens) of one row's new tokens (padded after the row stopped)."""
        eos_at = next((k for k, t in enumerate(ids) if t in self.eos_ids), None)
        if eos_at is not None:
            ids = ids[:eos_at + 1]
        # the eos token counts but is not text, even when it is an ordinary token (as in vLLM)
        text = self.tokenizer.decode(ids if eos_at is None else ids[:-1], skip_special_tokens=True)
        cut = find_stop(text, sampling.stop)
        if cut >= 0:
            # the shortest prefix whose text holds a stop string is where generation stopped: a binary search,
            # since a prefix that holds one stays holding it as tokens are added
            lo, hi = 1, len(ids)
            while lo < hi:
                mid = (lo + hi) // 2
                if find_stop(self.tokenizer.decode(ids[:mid], skip_special_tokens=True), sampling.stop) >= 0:
                    hi = mid
                else:
                    lo = mid + 1
            return text[:cut], "stop", lo
        if eos_at is not None:
            return text, "stop", len(ids)
        return text, "length", len(ids)

    def info(self) -> dict[str, Any]:
        import transformers

        return {"engine": "transformers", "version": transformers.__version__, "torch": torch.__version__,
                "model": self.model_path, "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device), "batch_size": self.batch_size, "eos_token_ids": self.eos_ids}

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
