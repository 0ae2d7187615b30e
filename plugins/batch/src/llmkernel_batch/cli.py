"""``llmkernel batch``: a live run of a JSONL (or text) file, or a provider batch.

llmkernel batch prompts.jsonl --output results.jsonl -n 50 --budget 5.00
llmkernel batch prompts.txt -t summarize -o temperature=0
llmkernel batch prompts.jsonl --dry-run
llmkernel batch prompts.jsonl --provider-batch -m openai/gpt-4o-mini
llmkernel batch status|results|cancel ID
llmkernel batch list
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from llmkernel.kernel import Kernel
    from llmkernel_batch.store import BatchJob

__all__ = ["add_arguments", "run"]

ACTIONS = ("status", "results", "cancel", "list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="+",
        metavar="INPUT | status ID | results ID | cancel ID | list",
        help="a JSONL file (one request a line) or a text file (one prompt a line); "
        "or an action on a provider batch",
    )
    parser.add_argument(
        "--output", metavar="PATH", help="results JSONL (default: STEM.results.jsonl beside "
        "INPUT, prompts.txt -> prompts.results.jsonl; '-' for stdout, not resumable)"
    )  # fmt: skip
    parser.add_argument("-m", "--model", help="model for lines without one (and text files)")
    parser.add_argument("-s", "--system", help="system prompt for lines without one")
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a request field or provider option for lines without it (VALUE as JSON if it is)",
    )
    parser.add_argument(
        "-t", "--template", metavar="NAME", help="a saved template (llmkernel-cli): its model, "
        "system prompt and options; its prompt for each line of a text file"
    )  # fmt: skip
    parser.add_argument(
        "-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a template parameter",
    )  # fmt: skip
    parser.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto")
    parser.add_argument(
        "-n", "--concurrency", type=int, help="requests at once (default 8, [plugin.batch])"
    )
    parser.add_argument("--ordered", action="store_true", help="write results in input order")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run again the requests that failed before"
    )
    parser.add_argument(
        "--budget", metavar="AMOUNT", help="stop taking work before spend passes AMOUNT (USD)"
    )
    parser.add_argument("--timeout", type=float, help="seconds for each request, all attempts")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the file and print the worst-case cost"
    )
    parser.add_argument(
        "--provider-batch",
        action="store_true",
        help="submit to the provider's batch API (OpenAI, Anthropic, Gemini) at batch prices",
    )
    parser.add_argument(
        "--wait", action="store_true", help="poll until the provider batch ends, then write results"
    )
    parser.add_argument("--poll-interval", type=float, help="seconds between polls with --wait")
    parser.add_argument("--json", action="store_true", help="status and list as JSON")


def run(args: argparse.Namespace, kernel: Kernel) -> int:
    from llmkernel_batch.remote.base import RemoteError

    try:
        return _run(args, kernel, sys.stdout, sys.stderr)
    except RemoteError as exc:
        print(f"llmkernel batch: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, kernel: Kernel, out: TextIO, err: TextIO) -> int:
    from llmkernel.errors import ConfigError

    first, rest = args.target[0], args.target[1:]
    if first in ACTIONS and not Path(first).is_file():
        if first == "list":
            if rest:
                raise ConfigError("batch list takes no argument")
            return _list(kernel, args, out)
        if len(rest) != 1:
            raise ConfigError(f"batch {first} needs exactly one batch id")
        return _action(kernel, first, rest[0], args, out, err)
    if rest:
        raise ConfigError(f"batch takes one input file, not {len(args.target)} arguments")
    return _input(kernel, Path(first), args, out, err)


def _input(kernel: Kernel, path: Path, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from llmkernel.errors import ConfigError
    from llmkernel_batch.items import BatchItem, read_items
    from llmkernel_batch.live import dry_run, run_live
    from llmkernel_batch.plugin import settings_for

    if not path.is_file():
        raise ConfigError(f"no input file {str(path)!r}")
    model, system, options, render = _defaults(args)
    entries = read_items(
        path,
        format=args.format,
        model=model,
        system=system,
        kernel=kernel,
        options=options,
        render=render,
    )
    if args.dry_run:
        return dry_run(kernel, entries, stdout=out, stderr=err)
    if args.provider_batch:
        from llmkernel_batch.provider import ProviderBatches

        items = []
        for entry in entries:
            if isinstance(entry, BatchItem):
                items.append(entry)
            else:
                err.write(f"llmkernel batch: skipped {entry}\n")
        batches = ProviderBatches(kernel)
        try:
            job = batches.submit(items, model=args.model)
            out.write(f"{job.id}\n")
            err.write(
                f"submitted {len(job.custom_ids)} request(s) to {job.provider}/{job.model}: "
                f"{job.status}; follow with `llmkernel batch status {job.id}`\n"
            )
            if args.wait:
                return _wait_and_collect(kernel, batches, job.id, args, out, err)
        finally:
            batches.close()
        return 0
    concurrency = args.concurrency or settings_for(kernel).get("concurrency") or 8
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    output = None if args.output == "-" else Path(args.output or _default_output(path))
    return run_live(
        kernel,
        entries,
        output=output,
        concurrency=concurrency,
        budget=_amount(args.budget),
        ordered=args.ordered,
        retry_failed=args.retry_failed,
        timeout=args.timeout,
        stdout=out,
        stderr=err,
    )


def _defaults(
    args: argparse.Namespace,
) -> tuple[str | None, str | None, dict[str, object], Callable[[str], str] | None]:
    """``(model, system, options, render)`` from -m, -s, -o and -t (a template
    of llmkernel-cli, when installed)."""
    from llmkernel_cli.shell import UsageError, parse_option

    options: dict[str, object] = {}
    model, system, render = args.model, args.system, None
    if args.template:
        try:
            from llmkernel_cli.templates import load
        except ImportError:
            raise UsageError("-t needs llmkernel-cli: pip install llmkernel-cli") from None
        template = load(args.template)
        params = dict(args.param)
        model = model or template.model
        system = system or template.render("", params)[0]
        options.update(template.options)
        if template.prompt is not None:
            render = lambda text: template.render(text, params)[1]  # noqa: E731
    options.update(parse_option(o, {"model": "-m", "messages": "the file"}) for o in args.option)
    return model, system, options, render


def _default_output(path: Path) -> Path:
    return path.with_name(path.stem + ".results.jsonl")


def _amount(text: str | None) -> Decimal | None:
    from llmkernel.errors import ConfigError

    if text is None:
        return None
    try:
        amount = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise ConfigError(f"--budget must be an amount such as 5.00, not {text!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ConfigError(f"--budget must be a positive amount, not {text!r}")
    return amount


def _action(
    kernel: Kernel, action: str, batch_id: str, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    from llmkernel_batch.provider import ProviderBatches

    batches = ProviderBatches(kernel)
    try:
        if action == "status":
            job = batches.status(batch_id)
            _show(job, args, out)
            return 0
        if action == "cancel":
            job = batches.cancel(batch_id)
            _show(job, args, out)
            return 0
        if args.wait:
            return _wait_and_collect(kernel, batches, batch_id, args, out, err)
        return _collect(batches, batch_id, args, out, err)
    finally:
        batches.close()


def _wait_and_collect(
    kernel: Kernel,
    batches: object,
    batch_id: str,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> int:
    from llmkernel_batch.plugin import settings_for
    from llmkernel_batch.provider import ProviderBatches

    assert isinstance(batches, ProviderBatches)
    interval = args.poll_interval or settings_for(kernel).get("poll_interval") or 30.0
    batches.wait(batch_id, interval=interval)
    return _collect(batches, batch_id, args, out, err)


def _collect(
    batches: object, batch_id: str, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    from llmkernel_batch.progress import Tally
    from llmkernel_batch.provider import ProviderBatches

    assert isinstance(batches, ProviderBatches)
    job, results = batches.results(batch_id)
    tally = Tally(total=len(results))
    if args.output and args.output != "-":
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for result in results:
                handle.write(result.to_line())
                tally.add(result)
    else:
        for result in results:
            out.write(result.to_line())
            tally.add(result)
    err.write(f"{tally.summary()}; batch {job.id} {job.status}, at batch prices\n")
    return 0 if tally.failed == 0 else 1


def _row(job: BatchJob) -> dict[str, object]:
    counts = job.info.get("request_counts") or job.info.get("metadata", {}).get("batchStats")
    return {
        "id": job.id,
        "provider": job.provider,
        "model": job.model,
        "status": job.status,
        "requests": len(job.custom_ids),
        "counts": counts,
        "collected": job.collected,
    }


def _show(job: BatchJob, args: argparse.Namespace, out: TextIO) -> None:
    row = _row(job)
    if args.json:
        out.write(json.dumps(row) + "\n")
        return
    counts = f" {json.dumps(row['counts'])}" if row["counts"] else ""
    out.write(
        f"{job.id}  {job.provider}/{job.model}  {job.status}  "
        f"{len(job.custom_ids)} request(s){counts}\n"
    )


def _list(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    from llmkernel_batch.store import JobStore, store_path

    store = JobStore(store_path(kernel))
    try:
        jobs = store.all()
    finally:
        store.close()
    if args.json:
        out.write(json.dumps([_row(j) for j in jobs]) + "\n")
        return 0
    if not jobs:
        out.write("no provider batches recorded\n")
    for job in jobs:
        _show(job, args, out)
    return 0
