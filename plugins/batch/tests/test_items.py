"""Reading a batch: both JSONL shapes, text files, bad lines by number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkernel_batch.items import BadLine, BatchItem, call_arguments, item_from, read_items


def write(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def test_chat_shape_and_batch_file_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.jsonl",
        [
            {"custom_id": "a", "model": "sim/chat", "messages": [{"role": "user", "content": "hi"}],
             "max_completion_tokens": 5, "seed": 3},
            {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "sim/echo", "messages": [{"role": "user", "content": "yo"}]}},
        ],
    )  # fmt: skip
    items = list(read_items(path))
    assert [type(i) for i in items] == [BatchItem, BatchItem]
    a, b = items
    assert (a.custom_id, a.line, a.model, a.body["max_tokens"]) == ("a", 1, "sim/chat", 5)
    assert (b.custom_id, b.model) == ("b", "sim/echo")
    kwargs = call_arguments(a, {"batch": "r1", "custom_id": "a"})
    assert kwargs["max_tokens"] == 5
    assert kwargs["options"] == {"seed": 3}  # not a chat field: a provider option
    assert kwargs["metadata"] == {"batch": "r1", "custom_id": "a"}


def test_bad_lines_are_reported_by_number_and_the_rest_go_on(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.jsonl",
        [
            {"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]},
            "{not json",
            {"custom_id": "a", "messages": [{"role": "user", "content": "again"}]},
            {"custom_id": "c", "messages": []},
            {"custom_id": "d", "url": "/v1/embeddings", "body": {"input": "x"}},
            "",
            {"custom_id": 5, "messages": [{"role": "user", "content": "x"}]},
            {"custom_id": "g", "messages": [{"role": "user", "content": "ok"}]},
        ],
    )
    out = list(read_items(path))
    bad = [o for o in out if isinstance(o, BadLine)]
    good = [o for o in out if isinstance(o, BatchItem)]
    assert [g.custom_id for g in good] == ["a", "g"]
    assert [b.line for b in bad] == [2, 3, 4, 5, 7]
    assert "not JSON" in bad[0].message
    assert "repeated" in bad[1].message
    assert "messages" in bad[2].message
    assert "/v1/chat/completions" in bad[3].message
    assert "custom_id" in bad[4].message


def test_text_file_one_prompt_a_line_with_model_and_system(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\nsecond prompt\n", encoding="utf-8")
    items = list(read_items(path, model="sim/echo", system="be brief"))
    assert [i.custom_id for i in items if isinstance(i, BatchItem)] == ["line-1", "line-3"]
    first = items[0]
    assert isinstance(first, BatchItem)
    assert first.model == "sim/echo"
    assert first.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert first.body["messages"][1] == {"role": "user", "content": "first prompt"}


def test_kernel_check_names_the_field(tmp_path: Path) -> None:
    pytest.importorskip("llmkernel_mock")
    from llmkernel import Kernel

    path = write(
        tmp_path / "in.jsonl",
        [{"custom_id": "a", "model": "sim/chat", "temperature": 9,
          "messages": [{"role": "user", "content": "hi"}]}],
    )  # fmt: skip
    with Kernel.from_config({"providers": {"sim": {"type": "mock"}}}) as kernel:
        (bad,) = list(read_items(path, kernel=kernel))
    assert isinstance(bad, BadLine)
    assert "temperature" in bad.message


def test_item_from_needs_custom_id_in_python() -> None:
    with pytest.raises(ValueError, match="custom_id"):
        item_from({"messages": [{"role": "user", "content": "x"}]})


def test_an_output_line_keeps_every_usage_bucket() -> None:
    """One conversion of ``Usage`` (``Usage.as_dict``): 1-hour cache writes were
    dropped from the output lines when each place listed the fields by hand."""
    from llmkernel.types import Message, Response, TextPart, Usage
    from llmkernel_batch.results import response_data

    usage = Usage(
        input_tokens=100,
        output_tokens=10,
        cached_input_tokens=20,
        cache_write_tokens=30,
        cache_write_1h_tokens=5,
        reasoning_tokens=4,
    )
    response = Response(
        message=Message(role="assistant", content=(TextPart(text="hi"),)), usage=usage
    )
    data = response_data(response)["usage"]
    assert data == {**usage.as_dict(), "total_tokens": 110}
    assert data["cache_write_1h_tokens"] == 5
    assert Usage(**usage.as_dict()) == usage
