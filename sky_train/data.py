"""Read SFT records, render them with the tokenizer's chat template, and label only assistant tokens.

Accepted inputs (`data.path`):
- Sky-T1 / ShareGPT records `{"system": ..., "conversations": [{"from": "user"|"assistant", "value": ...}]}`,
  as a JSON list or JSONL;
- OpenAI-style `{"messages": [{"role": ..., "content": ...}]}` JSONL (or a JSON list);
- a file holding one JSON object, possibly pretty-printed: one record, or, when the object is no record but
  holds a single list-valued key (`{"data": [...]}`), the records of that list (the key is printed);
- a `datasets` dataset: a directory written by `save_to_disk`, or `hf:<name>` for a hub name.

Files are UTF-8 (a byte-order mark is allowed). Every error names the file and the line (JSONL), the record
index (JSON list, dataset) or the byte and line (bytes that are not UTF-8) it comes from. Training reads the
tokenized samples through token_cache.py, which calls these functions once, on rank 0.
Labels are returned already shifted (`labels[t]` is the target for position t), so that packing samples
side by side can never train a token to predict the next document's first token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

IGNORE_INDEX = -100

_ROLE_ALIASES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "system": "system",
}


class DataError(ValueError):
    """A record that cannot be trained on; the message names the file and line or record."""


@dataclass
class Conversation:
    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}]
    source: str  # "file.jsonl:12" (1-based line) or "file.json[3]" / "dataset[3]" (0-based record)


@dataclass(eq=False, slots=True)
class Sample:
    """One tokenized conversation. `input_ids`/`labels` are lists (tokenize_conversation) or 1-D int32 numpy
    views into the flat arrays of the token cache (token_cache.py), so a rank never copies the whole set."""

    input_ids: Sequence[int]
    labels: Sequence[int]  # shifted: labels[t] is the token that should follow input_ids[t], or IGNORE_INDEX
    source: str
    truncated: bool = False
    # Counted from `labels` when not given (the cache stores it, so reading it costs nothing).
    num_label_tokens: int = -1

    def __post_init__(self) -> None:
        if self.num_label_tokens < 0:
            self.num_label_tokens = int(np.count_nonzero(np.asarray(self.labels) != IGNORE_INDEX))

    def __len__(self) -> int:
        return len(self.input_ids)


# ---------------------------------------------------------------------------------------------------------
# Reading records


def load_conversations(
    path: str | Path | None,
    split: str = "train",
    default_system: str | None = None,
    max_samples: int | None = None,
) -> list[Conversation]:
    """Read every record of `path` into normalised conversations (see the module docstring for formats)."""
    if path is None:
        from sky_train.embedded import EMBEDDED_DATA

        path = EMBEDDED_DATA
    spec = str(path)
    if spec.startswith("hf:"):
        import datasets

        rows = datasets.load_dataset(spec[3:], split=split)
        records: Iterable[tuple[str, Any]] = ((f"{spec}[{i}]", r) for i, r in enumerate(rows))
    elif Path(spec).is_dir():
        records = _dataset_dir_records(Path(spec), split)
    else:
        records = _file_records(Path(spec))

    out = []
    for source, record in records:
        out.append(Conversation(normalise_record(record, source, default_system), source))
        if max_samples is not None and len(out) >= max_samples:
            break
    if not out:
        raise DataError(f"{spec}: no records found")
    return out


def _dataset_dir_records(path: Path, split: str) -> Iterable[tuple[str, Any]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} (has {sorted(ds)})")
        ds = ds[split]
    return ((f"{path}[{i}]", r) for i, r in enumerate(ds))


def _file_records(path: Path) -> Iterable[tuple[str, Any]]:
    """JSONL (one record a line), a JSON list of records, or one JSON object (possibly pretty-printed)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:  # the first non-blank byte tells the format
        chunk = f.read(1 << 16).removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
        while chunk and not chunk.strip():
            chunk = f.read(1 << 16)
    head = chunk.lstrip()
    if not head:
        raise DataError(f"{path}: the file is empty")
    if head.startswith(b"["):  # a JSON list (Sky-T1 releases its data this way)
        rows = _parse_whole(path, _decode_whole(path))
        return ((f"{path}[{i}]", r) for i, r in enumerate(rows))
    return _jsonl_records(path)


def _decode_whole(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start} (line {line} column {col}): {e.reason}") from None


def _parse_whole(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _jsonl_records(path: Path) -> Iterable[tuple[str, Any]]:
    """Line by line (a large file is never held whole), unless the file is one JSON object over many lines."""
    seen = False
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 at byte {e.start} of the line: {e.reason}") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if not seen and line.lstrip().startswith("{"):  # maybe one pretty-printed object, not JSONL
                    yield from _single_object_records(path, lineno, line_error=e)
                    return
                raise DataError(f"{path}:{lineno}: malformed JSON (column {e.colno}: {e.msg})") from None
            seen = True
            yield f"{path}:{lineno}", record


def _single_object_records(path: Path, lineno: int, line_error: json.JSONDecodeError) -> Iterable[tuple[str, Any]]:
    """A file holding one JSON object: that object is one record; if it is no record itself but holds the
    records in a single list-valued key (`{"data": [...]}`), those (and it says so)."""
    try:
        obj = json.loads(_decode_whole(path))
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: malformed JSON: neither JSONL (line {lineno} column {line_error.colno}: {line_error.msg}) "
            f"nor one JSON object (line {e.lineno} column {e.colno}: {e.msg})"
        ) from None
    if isinstance(obj, dict) and "conversations" not in obj and "messages" not in obj:
        lists = [k for k, v in obj.items() if isinstance(v, list)]
        if len(lists) == 1:
            key = lists[0]
            print(f"[sky_train] {path}: one JSON object; reading its {len(obj[key])} records from key {key!r}",
                  flush=True)
            yield from ((f"{path}[{key!r}][{i}]", r) for i, r in enumerate(obj[key]))
            return
    yield f"{path}:{lineno}", obj


def normalise_record(record: Any, source: str, default_system: str | None = None) -> list[dict[str, str]]:
    """One record in any accepted format -> [{"role", "content"}], checked for an assistant turn."""
    if not isinstance(record, dict):
        raise DataError(f"{source}: expected a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        turns = record["conversations"]
        if not isinstance(turns, list):
            raise DataError(f"{source}: 'conversations' must be a list")
        messages = []
        system = record.get("system")
        if system:
            messages.append({"role": "system", "content": str(system)})
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise DataError(f"{source}: conversations[{j}] needs 'from' and 'value'")
            messages.append({"role": _role(turn["from"], source, j), "content": _text(turn["value"], source, j)})
    elif "messages" in record:
        turns = record["messages"]
        if not isinstance(turns, list):
            raise DataError(f"{source}: 'messages' must be a list")
        messages = []
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
                raise DataError(f"{source}: messages[{j}] needs 'role' and 'content'")
            messages.append({"role": _role(turn["role"], source, j), "content": _text(turn["content"], source, j)})
    else:
        raise DataError(f"{source}: record has neither 'conversations' (Sky-T1) nor 'messages' (OpenAI)")

    if default_system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": default_system})
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        raise DataError(f"{source}: no assistant turn with content; nothing to train on")
    return messages


def _role(raw: Any, source: str, j: int) -> str:
    role = _ROLE_ALIASES.get(str(raw).lower())
    if role is None:
        raise DataError(f"{source}: turn {j} has unknown role {raw!r}")
    return role


def _text(raw: Any, source: str, j: int) -> str:
    if not isinstance(raw, str):
        raise DataError(f"{source}: turn {j} content must be a string, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------------------------------------------------
# Rendering and labels


def render_segments(
    messages: list[dict[str, str]], tokenizer: Any, assistant_end: str | None = None
) -> list[tuple[str, bool]]:
    """Split the chat-template rendering of `messages` into (text, trained) segments.

    The template is rendered on growing prefixes of the conversation, so any template that renders a
    prefix as a prefix works (Qwen's, Llama's, ...). An assistant segment runs from its first content
    character through its terminator; what the template writes after the terminator (Qwen: "\\n") and the
    `<|im_start|>assistant\\n` header are prompt. `assistant_end` replaces the template's terminator (the
    tokenizer's eos token), e.g. "<|endoftext|>" as the original Sky-T1 template did.
    """
    template_end = tokenizer.eos_token
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise DataError("the chat template does not render a conversation prefix as a prefix")
        segments.append((prompt[len(rendered):], False))
        reply = full[len(prompt):]
        cut = reply.rfind(template_end) if template_end else -1
        if cut < 0:  # template without a terminator: train on the reply, append the configured one
            segments.append((reply + (assistant_end or ""), True))
        else:
            segments.append((reply[:cut] + (assistant_end or template_end), True))
            if reply[cut + len(template_end):]:
                segments.append((reply[cut + len(template_end):], False))
        rendered = full
    return [(text, trained) for text, trained in segments if text]


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_conversation(
    conversation: Conversation, tokenizer: Any, max_seq_len: int, assistant_end: str | None = None
) -> Sample:
    """Render, tokenize segment by segment, shift the labels and truncate to `max_seq_len` tokens.

    Segments are tokenized separately (as LLaMA-Factory does): the prompt then ends exactly where a
    generation engine starts, and no BPE merge crosses a prompt/answer boundary.
    """
    input_ids: list[int] = []
    trained: list[bool] = []
    try:
        segments = render_segments(conversation.messages, tokenizer, assistant_end)
    except Exception as err:  # a template error (jinja, bad roles order) must still name the record
        raise DataError(f"{conversation.source}: cannot render with the chat template: {err}") from err
    for text, is_assistant in segments:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        trained.extend([is_assistant] * len(ids))
    truncated = len(input_ids) > max_seq_len
    input_ids, trained = input_ids[:max_seq_len], trained[:max_seq_len]
    return Sample(input_ids, shift_labels(input_ids, trained), conversation.source, truncated)


def shift_labels(input_ids: list[int], trained: list[bool]) -> list[int]:
    """labels[t] = input_ids[t+1] where token t+1 is trained, else IGNORE_INDEX; the last is always ignored."""
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids[1:], trained[1:])]
    return labels + [IGNORE_INDEX] if input_ids else []


@dataclass
class DataReport:
    records: int
    samples: int  # kept for training
    truncated: int  # cut at max_seq_len (and kept)
    dropped: int  # nothing left to train on after truncation
    tokens: int
    label_tokens: int


def build_samples(
    conversations: list[Conversation],
    tokenizer: Any,
    max_seq_len: int,
    assistant_end: str | None = None,
    progress: bool = False,
) -> tuple[list[Sample], DataReport]:
    """Tokenize every conversation; drop those with no trained token left after truncation (counted).

    About 190 long (16K-character) records per second on one core: a minute and a half for Sky-T1's 17K.
    """
    from tqdm import tqdm

    samples, truncated, dropped = [], 0, 0
    for conv in tqdm(conversations, desc="tokenize", disable=not progress, dynamic_ncols=True):
        s = tokenize_conversation(conv, tokenizer, max_seq_len, assistant_end)
        truncated += s.truncated
        if s.num_label_tokens == 0:
            dropped += 1
            continue
        samples.append(s)
    if not samples:
        raise DataError(
            f"no sample has an assistant token within data.max_seq_len={max_seq_len} "
            f"({len(conversations)} records, first: {conversations[0].source})"
        )
    report = DataReport(
        records=len(conversations), samples=len(samples), truncated=truncated, dropped=dropped,
        tokens=sum(len(s) for s in samples), label_tokens=sum(s.num_label_tokens for s in samples),
    )
    return samples, report
