"""``embed``, ``embed-multi`` and ``similar`` on the mock's embeddings (a hash of
the text: the same text gives the same vector, so a stored item's own text is its
nearest neighbour at similarity 1)."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmkernel_mock")


def test_embed_prints_the_vector(cli: Any, tmp_path: Path) -> None:
    vector = json.loads(cli.ok("embed", "hello", "-m", "mock/embed").stdout)
    assert len(vector) == 8 and all(-1 <= v <= 1 for v in vector)
    assert json.loads(cli.ok("embed", "-m", "mock/embed", stdin="hello").stdout) == vector
    (tmp_path / "note.txt").write_text("hello")
    assert json.loads(cli.ok("embed", "-i", "note.txt", "-m", "mock/embed").stdout) == vector
    data = json.loads(cli.ok("embed", "hello", "-m", "mock/embed", "--dimensions", "3",
                             "--json").stdout)  # fmt: skip
    assert data["model"] == "mock/embed" and data["dimensions"] == 3
    assert len(data["embedding"]) == 3 and data["usage"]["input_tokens"] >= 1
    empty = cli("embed", "  ", "-m", "mock/embed")
    assert empty.returncode == 2 and "the text to embed is empty" in empty.stderr
    no_model = cli("embed", "hi")
    assert no_model.returncode == 2 and "-m/--model" in no_model.stderr


def test_embed_multi_then_similar(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "docs.csv").write_text(
        "id,title,body\n1,Pelicans,birds with a pouch\n2,Cheesecake,a dessert\n3,Go,a language\n"
    )
    done = cli.ok("embed-multi", "docs", "docs.csv", "-m", "mock/embed", "--store")
    assert "embedded 3 item(s) into 'docs' with mock/embed" in done.stderr
    path = Path(os.environ["XDG_DATA_HOME"]) / "llmkernel" / "embeddings.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = cli.ok("similar", "docs", "Cheesecake a dessert").stdout.splitlines()
    results = [json.loads(line) for line in lines]
    assert len(results) == 3
    assert results[0]["id"] == "2" and math.isclose(results[0]["score"], 1.0, rel_tol=1e-6)
    assert results[0]["content"] == "Cheesecake a dessert"
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]
    plain = cli.ok("similar", "docs", "--id", "1", "-n", "1", "-p").stdout
    assert plain.count("\n") == 1 and plain.split()[1] != "1", "an item is not its own match"
    again = cli.ok("embed-multi", "docs", "docs.csv")  # the collection's model; nothing changed
    assert "embedded 0 item(s)" in again.stderr


def test_embed_multi_from_jsonl_and_files(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text(
        '{"id": "a", "text": "alpha"}\n{"id": "b", "text": "beta", "tag": "x"}\n'
    )
    cli.ok("embed-multi", "items", "items.jsonl", "-m", "mock/embed")
    top = json.loads(cli.ok("similar", "items", "beta x", "-n", "1").stdout)
    assert top["id"] == "b" and top["content"] is None, "content kept only with --store"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "one.md").write_text("first note")
    (tmp_path / "notes" / "two.md").write_text("second note")
    cli.ok("embed-multi", "notes", "--files", "notes", "*.md", "-m", "mock/embed", "--prefix", "n/")
    top = json.loads(cli.ok("similar", "notes", "--content", "second note", "-n", "1").stdout)
    assert top["id"] == "n/two.md"


def test_similar_and_embed_multi_errors(cli: Any, tmp_path: Path) -> None:
    missing = cli("similar", "nope", "text")
    assert missing.returncode == 2 and "no collection 'nope' (collections: none)" in missing.stderr
    new = cli("embed-multi", "fresh", "-", stdin='{"id": 1, "t": "x"}\n')
    assert new.returncode == 2 and "collection 'fresh' is new: name its model with -m" in new.stderr
    cli.ok("embed-multi", "c", "-", "-m", "mock/embed", stdin='{"id": 1, "t": "x"}\n')
    other = cli("embed-multi", "c", "-", "-m", "mock/other", stdin='{"id": 2, "t": "y"}\n')
    assert other.returncode == 2 and "holds mock/embed vectors" in other.stderr
    bad = cli("embed-multi", "c", "-", stdin='{"no_id": 1}\n')
    assert bad.returncode == 2 and "record 1 is not an object with an 'id'" in bad.stderr
