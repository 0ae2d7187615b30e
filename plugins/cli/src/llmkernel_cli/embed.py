"""``llmkernel embed``, ``embed-multi`` and ``similar``: embeddings of texts, and
small collections of them in SQLite searched by cosine similarity.

``$XDG_DATA_HOME/llmkernel/embeddings.db`` (0600, WAL), as ``llm`` lays it out:
``collections (name, model)`` and ``embeddings (collection, id, embedding,
content, content_hash, metadata, updated)``, each vector packed as little-endian
float32. ``similar`` reads every vector of the collection and ranks them in plain
Python: fine for the thousands of items a CLI collection holds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from llmkernel_cli.paths import connect, data_dir

if TYPE_CHECKING:
    import sqlite_utils

    from llmkernel.kernel import Kernel

__all__ = [
    "EmbeddingStore",
    "cosine",
    "decode",
    "embed_arguments",
    "encode",
    "multi_arguments",
    "run_embed",
    "run_multi",
    "run_similar",
    "similar_arguments",
]

_SCHEMA = (
    "CREATE TABLE collections (name TEXT PRIMARY KEY, model TEXT NOT NULL)",
    """CREATE TABLE embeddings (
        collection TEXT NOT NULL REFERENCES collections(name),
        id TEXT NOT NULL,
        embedding BLOB NOT NULL,
        content TEXT,
        content_hash TEXT NOT NULL,
        metadata TEXT,
        updated REAL NOT NULL,
        PRIMARY KEY (collection, id))""",
)


def encode(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def decode(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class EmbeddingStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "embeddings.db"
        self.db: sqlite_utils.Database = connect(self.path)
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("PRAGMA user_version").fetchone()[0] < 1:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")

    def model(self, collection: str) -> str | None:
        row = self.db.execute(
            "SELECT model FROM collections WHERE name = ?", [collection]
        ).fetchone()
        return None if row is None else str(row[0])

    def collections(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM collections ORDER BY name")]

    def hashes(self, collection: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT id, content_hash FROM embeddings WHERE collection = ?", [collection]
        )
        return {r[0]: r[1] for r in rows}

    def store(
        self,
        collection: str,
        model: str,
        items: Sequence[tuple[str, str, list[float]]],
        *,
        keep_content: bool,
    ) -> None:
        """``items`` of ``(id, content, vector)`` in one transaction."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR IGNORE INTO collections (name, model) VALUES (?, ?)", (collection, model)
            )
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (collection, id, embedding, content, "
                "content_hash, updated) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (collection, i, encode(v), c if keep_content else None, _hash(c), time.time())
                    for i, c, v in items
                ],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def vector(self, collection: str, item: str) -> list[float] | None:
        row = self.db.execute(
            "SELECT embedding FROM embeddings WHERE collection = ? AND id = ?", [collection, item]
        ).fetchone()
        return None if row is None else decode(row[0])

    def similar(
        self, collection: str, vector: Sequence[float], n: int, skip: str | None = None
    ) -> list[dict[str, Any]]:
        scored = []
        for item, blob, content in self.db.execute(
            "SELECT id, embedding, content FROM embeddings WHERE collection = ?", [collection]
        ):
            if item != skip:
                scored.append(
                    {"id": item, "score": cosine(vector, decode(blob)), "content": content}
                )
        scored.sort(key=lambda r: r["score"], reverse=True)
        return scored[:n]


def _hash(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------------- embed


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="the text; '-' or nothing: stdin")
    parser.add_argument("-m", "--model", required=True, help="embedding model (provider/model)")
    parser.add_argument("-i", "--input", metavar="PATH", help="embed this file's text")
    parser.add_argument("--dimensions", type=int, help="shorter vectors, where the model can")
    parser.add_argument(
        "--json", action="store_true", help="the vector with model, usage and cost as JSON"
    )


def _text(args: argparse.Namespace) -> str:
    from llmkernel_cli.shell import UsageError

    if args.input:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"-i {args.input!r}: {exc}") from None
    elif args.text in (None, "-"):
        if sys.stdin.isatty():
            raise UsageError("no text: pass one, -i FILE, or pipe it on stdin")
        text = sys.stdin.read()
    else:
        text = args.text
    if not text.strip():
        raise UsageError("the text to embed is empty")
    return str(text)


def run_embed(args: argparse.Namespace, kernel: Kernel) -> int:
    kwargs = {"dimensions": args.dimensions} if args.dimensions else {}
    response = kernel.embed(args.model, _text(args), **kwargs)
    vector = response.vectors[0]
    if not args.json:
        print(json.dumps(vector))
        return 0
    usage = response.usage
    data = {
        "model": f"{response.provider}/{response.model}",
        "dimensions": len(vector),
        "usage": {"input_tokens": usage.input_tokens},
        "cost": None if response.cost is None else str(response.cost),
        "embedding": vector,
    }
    print(json.dumps(data))
    return 0


# ---------------------------------------------------------------------- embed-multi


def multi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", help="the collection to add to (made if new)")
    parser.add_argument(
        "input", nargs="?", help="CSV/TSV (id, then content columns), JSON or JSONL; '-': stdin"
    )
    parser.add_argument("--format", choices=("auto", "csv", "tsv", "json", "jsonl"), default="auto")
    parser.add_argument(
        "--files", nargs=2, metavar=("DIRECTORY", "GLOB"), help="embed each matching file"
    )
    parser.add_argument("-m", "--model", help="embedding model (default: the collection's)")
    parser.add_argument("--store", action="store_true", help="keep the text in the database")
    parser.add_argument("--prefix", default="", help="put before every id")
    parser.add_argument("--batch-size", type=int, default=100, help="texts per request")


def _rows(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    from llmkernel_cli.shell import UsageError

    if args.files:
        folder, pattern = Path(args.files[0]), args.files[1]
        if not folder.is_dir():
            raise UsageError(f"--files: {str(folder)!r} is not a directory")
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                try:
                    yield str(path.relative_to(folder)), path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    print(f"skipped {path}: not UTF-8 text", file=sys.stderr)
        return
    if args.input is None:
        raise UsageError("embed-multi needs an input file ('-' for stdin) or --files DIR GLOB")
    if args.input == "-":
        text, name = sys.stdin.read(), ""
    else:
        try:
            text, name = Path(args.input).read_text(encoding="utf-8"), args.input
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{args.input!r}: {exc}") from None
    kind = args.format
    if kind == "auto":
        suffix = Path(name).suffix.lower().lstrip(".")
        head = text.lstrip()[:1]
        kind = (
            suffix
            if suffix in ("csv", "tsv", "json", "jsonl")
            else ("json" if head == "[" else "jsonl" if head == "{" else "csv")
        )
        if kind == "json" and head == "{":
            kind = "jsonl"
    yield from (_structured(text, kind) if kind in ("json", "jsonl") else _table(text, kind))


def _table(text: str, kind: str) -> Iterator[tuple[str, str]]:
    reader = csv.reader(io.StringIO(text), delimiter="\t" if kind == "tsv" else ",")
    header = next(reader, None)
    for row in reader:
        if row and header is not None:
            yield row[0], " ".join(row[1:])


def _structured(text: str, kind: str) -> Iterator[tuple[str, str]]:
    from llmkernel_cli.shell import UsageError

    try:
        records = (
            json.loads(text)
            if kind == "json"
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except ValueError as exc:
        raise UsageError(f"the input is not {kind.upper()}: {exc}") from None
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "id" not in record:
            raise UsageError(f"record {number} is not an object with an 'id'")
        content = " ".join(str(v) for k, v in record.items() if k != "id" and v is not None)
        yield str(record["id"]), content


def run_multi(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_cli.shell import UsageError

    store = EmbeddingStore()
    model = args.model or store.model(args.collection)
    if model is None:
        raise UsageError(f"collection {args.collection!r} is new: name its model with -m")
    if store.model(args.collection) not in (None, model):
        raise UsageError(
            f"collection {args.collection!r} holds {store.model(args.collection)} vectors, "
            f"not {model}'s"
        )
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    known = store.hashes(args.collection)
    pending = [
        (args.prefix + item, content)
        for item, content in _rows(args)
        if content.strip() and known.get(args.prefix + item) != _hash(content)
    ]
    done = 0
    for start in range(0, len(pending), args.batch_size):
        batch = pending[start : start + args.batch_size]
        response = kernel.embed(model, [c for _, c in batch])
        store.store(
            args.collection,
            model,
            [(i, c, v) for (i, c), v in zip(batch, response.vectors, strict=True)],
            keep_content=args.store,
        )
        done += len(batch)
    print(f"embedded {done} item(s) into {args.collection!r} with {model}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- similar


def similar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection")
    parser.add_argument("text", nargs="?", help="find items like this text")
    parser.add_argument("--content", help="the text (llm's -c; -c is --config here)")
    parser.add_argument("-i", "--input", metavar="PATH", help="a file's text")
    parser.add_argument("--id", help="find items like this stored one")
    parser.add_argument("-n", "--number", type=int, default=10, help="results (default 10)")
    parser.add_argument("-p", "--plain", action="store_true", help="one 'score id' line each")


def run_similar(args: argparse.Namespace, kernel: Kernel, out: TextIO | None = None) -> int:
    from llmkernel_cli.shell import UsageError

    out = out or sys.stdout
    store = EmbeddingStore()
    model = store.model(args.collection)
    if model is None:
        known = ", ".join(store.collections()) or "none"
        raise UsageError(f"no collection {args.collection!r} (collections: {known})")
    if args.id is not None:
        vector = store.vector(args.collection, args.id)
        if vector is None:
            raise UsageError(f"no item {args.id!r} in collection {args.collection!r}")
    else:
        args.text = args.content if args.content is not None else args.text
        vector = kernel.embed(model, _text(args)).vectors[0]
    for row in store.similar(args.collection, vector, args.number, skip=args.id):
        if args.plain:
            out.write(f"{row['score']:.6f} {row['id']}\n")
        else:
            out.write(json.dumps(row) + "\n")
    return 0
