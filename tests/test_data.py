"""Reading SFT records, chat rendering and assistant-only labels, with hand-written expected strings."""

import json

import pytest

from conftest import sky_record, write_jsonl
from sky_train.data import (
    IGNORE_INDEX, Conversation, DataError, build_samples, load_conversations, render_segments, tokenize_conversation,
)

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def _trained_text(sample, tokenizer):
    """Decode the targets: exactly the tokens the loss is computed on."""
    return tokenizer.decode([y for y in sample.labels if y != IGNORE_INDEX])


def test_chat_rendering_matches_qwen_format(tokenizer):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert render_segments(msgs, tokenizer) == [
        ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", False),
        ("A<|im_end|>", True),
        ("\n", False),
    ]
    # Without a system message the Qwen2.5 template inserts its default one.
    no_sys = render_segments(msgs[1:], tokenizer)
    assert no_sys[0][0] == (f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n"
                            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")


def test_only_assistant_tokens_are_trained_in_every_turn(tokenizer):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is 2+2?"},
        {"role": "assistant", "content": "<|begin_of_thought|>\n\n2+2=4\n\n<|end_of_thought|> 4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    s = tokenize_conversation(Conversation(msgs, "t"), tokenizer, max_seq_len=10_000)
    assert _trained_text(s, tokenizer) == msgs[2]["content"] + "<|im_end|>" + "6<|im_end|>"
    # The full token stream decodes back to the template's rendering.
    rendered = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert tokenizer.decode(s.input_ids) == rendered
    # The first trained target is predicted from the newline closing "<|im_start|>assistant\n".
    first = next(t for t, y in enumerate(s.labels) if y != IGNORE_INDEX)
    assert tokenizer.decode(s.input_ids[: first + 1]).endswith("<|im_start|>assistant\n")


def test_assistant_terminator_can_be_endoftext_as_in_the_original(tokenizer):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    s = tokenize_conversation(Conversation(msgs, "t"), tokenizer, 10_000, assistant_end="<|endoftext|>")
    assert _trained_text(s, tokenizer) == "hello<|endoftext|>"
    assert tokenizer.decode(s.input_ids).endswith("<|im_start|>assistant\nhello<|endoftext|>\n")


def test_truncation_keeps_the_prefix_and_is_reported(tokenizer):
    long = sky_record("q", "word " * 400)
    short = sky_record("q", "ok")
    prompt_only = sky_record("x " * 300, "unreachable")
    convs = [Conversation(m, str(i)) for i, m in enumerate(
        [load_conversations_from(r) for r in (long, short, prompt_only)])]
    full = tokenize_conversation(convs[0], tokenizer, 100_000)
    samples, report = build_samples(convs, tokenizer, max_seq_len=64)
    assert len(samples[0]) == 64 and samples[0].truncated
    assert samples[0].input_ids == full.input_ids[:64]
    assert samples[0].labels[-1] == IGNORE_INDEX and samples[0].labels[:-1] == full.labels[:63]
    assert (report.records, report.samples, report.truncated, report.dropped) == (3, 2, 2, 1)


def load_conversations_from(record):
    from sky_train.data import normalise_record

    return normalise_record(record, "inline")


def test_all_input_formats_give_the_same_conversation(tmp_path):
    rec = sky_record("What is 1+1?", "2", system="sys")
    expected = [{"role": "system", "content": "sys"}, {"role": "user", "content": "What is 1+1?"},
                {"role": "assistant", "content": "2"}]
    (tmp_path / "list.json").write_text(json.dumps([rec, rec]))
    write_jsonl(tmp_path / "sky.jsonl", [rec])
    write_jsonl(tmp_path / "oai.jsonl", [{"messages": expected}])
    # ShareGPT's human/gpt role names too.
    write_jsonl(tmp_path / "sharegpt.jsonl", [{"system": "sys", "conversations": [
        {"from": "human", "value": "What is 1+1?"}, {"from": "gpt", "value": "2"}]}])
    for name in ("list.json", "sky.jsonl", "oai.jsonl", "sharegpt.jsonl"):
        assert load_conversations(tmp_path / name)[0].messages == expected, name
    assert load_conversations(tmp_path / "list.json")[1].source == f"{tmp_path / 'list.json'}[1]"


def test_datasets_dataset_dir_and_hub_style_name(tmp_path):
    import datasets

    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    datasets.Dataset.from_list([rec, rec]).save_to_disk(str(tmp_path / "saved"))
    convs = load_conversations(tmp_path / "saved")
    assert len(convs) == 2 and convs[0].messages[1]["content"] == "a"
    assert convs[1].source.endswith("saved[1]")
    # "hf:<name>" goes through datasets.load_dataset (a hub name, or here a local folder of JSONL files).
    (tmp_path / "hub").mkdir()
    write_jsonl(tmp_path / "hub" / "train.jsonl", [rec] * 3)
    assert len(load_conversations(f"hf:{tmp_path / 'hub'}")) == 3


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(sky_record("q", "a")) + "\n\n" + '{"conversations": [\n')
    with pytest.raises(DataError, match=rf"{path}:3: malformed JSON"):
        load_conversations(path)


def test_record_without_assistant_turn_names_file_and_line(tmp_path):
    no_reply = {"conversations": [{"from": "user", "value": "q"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [sky_record("q", "a"), no_reply])
    with pytest.raises(DataError, match=rf"{path}:2: no assistant turn"):
        load_conversations(path)
    listed = tmp_path / "d.json"
    no_reply = {"messages": [{"role": "user", "content": "q"}]}
    listed.write_text(json.dumps([sky_record("q", "a"), sky_record("q", "a"), no_reply]))
    with pytest.raises(DataError, match=rf"{listed}\[2\]: no assistant turn"):
        load_conversations(listed)


def test_empty_file_and_unknown_shapes_are_named(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match=rf"{empty}: the file is empty"):
        load_conversations(empty)
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "q", "completion": "a"}])
    with pytest.raises(DataError, match=rf"{odd}:1: record has neither"):
        load_conversations(odd)
    role = write_jsonl(tmp_path / "role.jsonl", [{"messages": [{"role": "narrator", "content": "x"}]}])
    with pytest.raises(DataError, match=rf"{role}:1: turn 0 has unknown role 'narrator'"):
        load_conversations(role)
    with pytest.raises(DataError, match="no such file"):
        load_conversations(tmp_path / "missing.jsonl")


def test_a_template_error_names_the_record(tokenizer):
    class Broken:
        eos_token = "<|im_end|>"

        def apply_chat_template(self, *args, **kwargs):
            raise ValueError("Conversation roles must alternate")

    conv = Conversation([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "train.jsonl:7")
    with pytest.raises(DataError, match=r"train.jsonl:7: cannot render with the chat template: Conversation roles"):
        tokenize_conversation(conv, Broken(), 100)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    good = json.dumps(sky_record("q", "a")).encode()
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(good + b"\n" + good + b"\n" + good.replace(b'"q"', b'"caf\xe9"') + b"\n")
    with pytest.raises(DataError, match=rf"{jsonl}:3: not valid UTF-8 at byte \d+ of the line"):
        load_conversations(jsonl)
    listed = tmp_path / "latin1.json"
    text = b"[\n" + good + b",\n  " + good.replace(b'"a"', b'"\xff"') + b"\n]"
    listed.write_bytes(text)
    offset = text.index(b"\xff")
    with pytest.raises(DataError, match=rf"{listed}: not valid UTF-8 at byte {offset} \(line 3 column "):
        load_conversations(listed)


def test_a_pretty_printed_json_object_is_one_record(tmp_path):
    rec = sky_record("What is 1+1?", "2", system="sys")
    one = tmp_path / "one.json"
    one.write_text("\n" + json.dumps(rec, indent=2) + "\n")
    (conv,) = load_conversations(one)
    assert conv.messages[1:] == [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "2"}]
    assert conv.source == f"{one}:2"  # the line the object starts on
    # A byte-order mark in front changes nothing.
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec).encode() + b"\n")
    assert load_conversations(bom)[0].messages == conv.messages


def test_records_under_one_list_valued_key_are_read_and_the_key_is_named(tmp_path, capsys):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 2, "data": [sky_record("q", "a"), sky_record("q2", "a2")]}, indent=1))
    convs = load_conversations(wrapped)
    assert [c.messages[-1]["content"] for c in convs] == ["a", "a2"]
    assert convs[1].source == f"{wrapped}['data'][1]"
    assert f"{wrapped}: one JSON object; reading its 2 records from key 'data'" in capsys.readouterr().out
    bad = tmp_path / "wrapped_bad.json"
    bad.write_text(json.dumps({"data": [sky_record("q", "a"), {"messages": []}]}, indent=1))
    with pytest.raises(DataError, match=rf"{bad}\['data'\]\[1\]: no assistant turn"):
        load_conversations(bad)


def test_a_broken_pretty_printed_object_says_where(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "conversations": [\n    {"from": "user" "value": "q"}\n  ]\n}\n')
    with pytest.raises(DataError, match=rf"{broken}: malformed JSON: neither JSONL \(line 1 .*\) nor one JSON "
                                        r"object \(line 3 column 21: Expecting ','"):
        load_conversations(broken)


def test_a_list_element_that_is_not_an_object_names_its_index(tmp_path):
    listed = tmp_path / "d.json"
    listed.write_text(json.dumps([sky_record("q", "a"), "just a string"]))
    with pytest.raises(DataError, match=rf"{listed}\[1\]: expected a JSON object, got str"):
        load_conversations(listed)
