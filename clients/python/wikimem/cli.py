"""The `wikimem` command: ingest, sync, ask, inspect and delete documents, and run the services.

Exit codes: 0 ok; 1 partial failure or a failed request; 2 usage error or bad input; 3 server not reachable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, TextIO

from wikimem import ingest as ingest_mod
from wikimem import sync as sync_mod
from wikimem.client import WikimemClient
from wikimem.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
    WikimemError,
)
from wikimem.models import Answer, Citation, answer_to_dict, default_address, document_to_dict

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CliError(Exception):
    """An expected failure: print `message` and exit with `code`, no traceback."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _split_groups(values: Sequence[str] | None) -> list[str]:
    return [g.strip() for value in values or () for g in value.split(",") if g.strip()]


def _client(args: argparse.Namespace) -> WikimemClient:
    return WikimemClient(
        address=args.addr, groups=_split_groups(args.groups), timeout=args.timeout, tls=args.tls, ca_file=args.ca_file,
        token=args.token, api_key=args.api_key,
    )


def _unavailable(client: WikimemClient, exc: UnavailableError) -> CliError:
    """Tell "nothing listens there" apart from "the orchestrator is up but a service behind it is not"."""
    try:
        client.health(timeout=2.0)
    except WikimemError:
        return CliError(f"cannot reach wikimem at {client.address} — start it with `wikimem serve`", EXIT_UNAVAILABLE)
    return CliError(f"wikimem at {client.address} is up but cannot answer: {exc.message}", EXIT_UNAVAILABLE)


def _error(client: WikimemClient, exc: WikimemError) -> CliError:
    if isinstance(exc, UnavailableError):
        return _unavailable(client, exc)
    if isinstance(exc, UnimplementedError):
        return CliError(
            f"the server at {client.address} is not a wikimem orchestrator ({exc.message})", EXIT_UNAVAILABLE
        )
    if isinstance(exc, ResourceExhaustedError):
        return CliError(f"{busy_line(exc.retry_after_s)}: {exc.message}", EXIT_FAILED)
    code = EXIT_USAGE if isinstance(exc, InvalidArgumentError) else EXIT_FAILED
    return CliError(f"{exc.code.name.lower()}: {exc.message}", code)


def busy_line(retry_after_s: float | None) -> str:
    """"server busy, retry in N s" from the server's hint (rounded up to a tenth of a second), or "server busy"."""
    if retry_after_s is None:
        return "server busy"
    return f"server busy, retry in {math.ceil(retry_after_s * 10) / 10:g} s"


def _json_line(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


# --- ask -----------------------------------------------------------------------------------------------------


def _bold(text: str, tty: bool) -> str:
    return f"\033[1m{text}\033[0m" if tty and text else text


def format_citation(number: int, citation: Citation, tty: bool = False) -> str:
    """`[1] title — doc_id@rev chars start–end` and the quote (the answer in bold on a terminal)."""
    title = citation.title or citation.doc_id
    head = f"[{number}] {title} — {citation.doc_id}@{citation.revision} chars {citation.start}–{citation.end}"
    quote = citation.quote
    a, b = citation.answer_start - citation.start, citation.answer_end - citation.start
    if tty and 0 <= a < b <= len(quote):
        quote = quote[:a] + _bold(quote[a:b], True) + quote[b:]
    quote = " ".join(quote.split())
    return f"{head}\n    “{quote}”"


#: Reader backends that write answers in their own words (streamed by default, checked sentence by sentence).
GENERATIVE_READERS = ("local-llm", "openai")
DEFAULT_TIMEOUT_S, GENERATIVE_TIMEOUT_S = 120.0, 600.0


def format_sentences(answer: Answer) -> list[str]:
    """A generated answer's sentences: ✓ with the numbers of the citations that support it, or ✗ and why."""
    if not answer.generated or not answer.sentences:
        return []
    label = answer.reader + (f", {answer.reader_model}" if answer.reader_model else "")
    lines = [f"checked against the passages ({label}):"]
    for sentence in answer.sentences:
        text = " ".join(sentence.text.split())
        if sentence.verified:
            refs = "".join(f"[{i + 1}]" for i in sentence.citations)
            lines.append(f"  ✓ {text} {refs}")
        else:
            fate = "kept, unverified" if sentence.in_answer else "dropped"
            lines.append(f"  ✗ {text} ({fate}: {sentence.note})")
    return lines


def print_answer(answer: Answer, out: TextIO, tty: bool = False, with_answer: bool = True) -> None:
    if not with_answer:
        pass
    elif answer.abstained:
        reason = f" ({answer.abstain_reason})" if answer.abstain_reason else ""
        out.write(f"No answer in the wiki{reason}.\n")
    else:
        out.write(_bold(" ".join(answer.answer.split()), tty) + "\n")  # a span may cross a line break
    checked = format_sentences(answer)
    if checked:
        out.write("\n" + "\n".join(checked) + "\n")
    if answer.citations:
        out.write("\n")
        for i, citation in enumerate(answer.citations, 1):
            out.write(format_citation(i, citation, tty) + "\n")
    for warning in answer.warnings:
        out.write(f"note: {warning}\n")
    out.flush()


def _ask_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "collection": args.collection,
        "retrieve_k": args.retrieve_k,
        "read_k": args.read_k,
        "reader": args.reader,
        "no_cache": args.no_cache,
        "include_passages": args.passages,
        "max_tokens": args.max_tokens,
        "unsupported": args.unsupported,
        "no_qa_memory": args.no_qa_memory,
        "retrieval": args.retrieval,
    }


def _stream_answer(client: WikimemClient, question: str, args: argparse.Namespace, tty: bool) -> None:
    """Print the answer as its deltas arrive, then the citations."""
    final: Answer | None = None
    streamed = False
    for event in client.ask_stream(question, **_ask_kwargs(args)):
        if isinstance(event, str):
            sys.stdout.write(event)
            sys.stdout.flush()
            streamed = streamed or bool(event)
        else:
            final = event
    if final is None:
        raise CliError("the answer stream ended without a result", EXIT_FAILED)
    if not streamed:
        print_answer(final, sys.stdout, tty)
        return
    sys.stdout.write("\n")
    if final.generated and final.abstained:
        sys.stdout.write(f"\nNo verified answer ({final.abstain_reason}).\n")
    elif final.generated and " ".join(final.answer.split()) != " ".join(final.generated.split()):
        sys.stdout.write("\nverified answer: " + _bold(" ".join(final.answer.split()), tty) + "\n")
    print_answer(final, sys.stdout, tty, with_answer=False)


def cmd_ask(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    if args.reader in GENERATIVE_READERS and args.timeout == DEFAULT_TIMEOUT_S:
        args.timeout = GENERATIVE_TIMEOUT_S  # a model on a CPU may take minutes
    with _client(args) as client:
        if args.question != "-":
            try:
                if (args.stream or args.reader in GENERATIVE_READERS) and not args.json:
                    _stream_answer(client, args.question, args, tty)
                    return EXIT_OK
                answer = client.ask(args.question, **_ask_kwargs(args))
            except WikimemError as exc:
                raise _error(client, exc) from None
            if args.json:
                _json_line(answer_to_dict(answer, args.question), sys.stdout)
            else:
                print_answer(answer, sys.stdout, tty)
            return EXIT_OK
        failed = 0
        for line in sys.stdin:
            question = line.strip()
            if not question:
                continue
            try:
                answer = client.ask(question, **_ask_kwargs(args))
            except (UnavailableError, UnimplementedError) as exc:
                raise _error(client, exc) from None
            except WikimemError as exc:
                failed += 1
                retry = exc.retry_after_s if isinstance(exc, ResourceExhaustedError) else None
                if args.json:
                    error: dict[str, Any] = {"code": exc.code.name, "message": exc.message}
                    if retry is not None:
                        error["retry_after_s"] = retry
                    _json_line({"question": question, "error": error}, sys.stdout)
                else:
                    busy = isinstance(exc, ResourceExhaustedError)
                    reason = f"{busy_line(retry)}: {exc.message}" if busy else exc.message
                    print(f"Q: {question}\nerror: {reason}\n", flush=True)
                continue
            if args.json:
                _json_line(answer_to_dict(answer, question), sys.stdout)
            else:
                sys.stdout.write(f"Q: {question}\n")
                print_answer(answer, sys.stdout, tty)
                sys.stdout.write("\n")
        return EXIT_FAILED if failed else EXIT_OK


# --- documents -----------------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    try:
        files = ingest_mod.discover(args.paths)
    except ingest_mod.IngestUsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if not files:
        raise CliError(
            f"no Markdown or text files ({', '.join(ingest_mod.SUFFIXES)}) in {' '.join(args.paths)}", EXIT_USAGE
        )
    from tqdm import tqdm

    acl = _split_groups(args.acl)
    with (
        _client(args) as client,
        tqdm(total=len(files), unit="file", file=sys.stderr, disable=None, desc="ingest") as bar,
    ):

        def done(item: ingest_mod.FileToIngest, outcome: str, detail: str) -> None:
            bar.update(1)
            if outcome == "failed":
                bar.write(f"skipped {item.path}: {detail}", file=sys.stderr)
            elif outcome != "unchanged" and not args.quiet:
                bar.write(f"{outcome:<8} {item.doc_id} ({detail})", file=sys.stdout)

        try:
            report = ingest_mod.ingest(
                client, files, collection=args.collection, acl=acl, workers=args.workers, on_done=done
            )
        except (UnavailableError, UnimplementedError) as exc:
            bar.close()
            raise _error(client, exc) from None
    print(
        f"{report.total} files: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.unchanged)} unchanged, {len(report.failed)} failed"
    )
    return EXIT_FAILED if report.failed else EXIT_OK


def _print_sync_plan(mirror: sync_mod.Mirror, plan: sync_mod.SyncPlan) -> None:
    for f in plan.puts:
        print(f"would {'change' if f.doc_id in mirror.remote else 'add'}  {f.doc_id}")
    for r in plan.deletes:
        print(f"would delete  {r.doc_id} (rev {r.revision})")
    for f in plan.unreadable:
        print(f"cannot sync {f.path}: {f.error}", file=sys.stderr)
    print(
        f"dry run: {len(plan.puts) + len(plan.unchanged) + len(plan.unreadable)} files: "
        f"{sum(f.doc_id not in mirror.remote for f in plan.puts)} to add, "
        f"{sum(f.doc_id in mirror.remote for f in plan.puts)} to change, {len(plan.deletes)} to delete, "
        f"{len(plan.unchanged)} unchanged, {len(plan.unreadable)} unreadable; nothing was sent"
    )


def _watch(mirror: sync_mod.Mirror, args: argparse.Namespace, done: sync_mod.OnDone) -> None:
    """Apply changes every `--interval` seconds until SIGINT/SIGTERM."""
    import signal
    import threading

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"watching {mirror.root} (every {args.interval:g}s; Ctrl-C to stop)", flush=True)
    down: str | None = None
    try:
        while not stop.wait(args.interval):
            try:
                mirror.step(done)
            except ingest_mod.IngestUsageError as exc:
                print(f"wikimem: {exc}; waiting for it to come back", file=sys.stderr, flush=True)
            except (UnavailableError, UnimplementedError) as exc:
                if down != exc.message:
                    print(f"wikimem: cannot reach wikimem ({exc.message}); retrying", file=sys.stderr, flush=True)
                down = exc.message
            else:
                if down is not None:
                    print("wikimem: reachable again", file=sys.stderr, flush=True)
                    down = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)


def cmd_sync(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise CliError(f"--interval must be positive, not {args.interval:g}", EXIT_USAGE)
    if args.watch and args.dry_run:
        raise CliError("--dry-run and --watch cannot be combined", EXIT_USAGE)
    from tqdm import tqdm

    acl = _split_groups(args.acl)
    # documents restricted to --acl groups must stay visible to this sync, or it could neither see nor delete them
    groups = list(dict.fromkeys(_split_groups(args.groups) + acl))
    with WikimemClient(
        address=args.addr, groups=groups, timeout=args.timeout, tls=args.tls, ca_file=args.ca_file,
        token=args.token, api_key=args.api_key,
    ) as client:
        try:
            mirror = sync_mod.Mirror(client, args.path, collection=args.collection, acl=acl, workers=args.workers)
            mirror.load_remote()
            plan = mirror.plan(mirror.scan())
        except ingest_mod.IngestUsageError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        except WikimemError as exc:
            raise _error(client, exc) from None
        if args.dry_run:
            _print_sync_plan(mirror, plan)
            return EXIT_FAILED if plan.unreadable else EXIT_OK
        with tqdm(total=plan.actions, unit="doc", file=sys.stderr, disable=None, desc="sync") as bar:

            def done(outcome: str, name: str, detail: str) -> None:
                if outcome != "unchanged":
                    bar.update(1)
                if outcome == "failed":
                    bar.write(f"failed {name}: {detail}", file=sys.stderr)
                elif outcome != "unchanged" and not args.quiet:
                    bar.write(f"{outcome:<8} {name} ({detail})", file=sys.stdout)
                    sys.stdout.flush()

            try:
                report = mirror.apply(plan, done)
            except (UnavailableError, UnimplementedError) as exc:
                bar.close()
                raise _error(client, exc) from None
        print(report.summary(), flush=True)
        if not args.watch:
            return EXIT_FAILED if report.failed else EXIT_OK

        def live(outcome: str, name: str, detail: str) -> None:
            if outcome == "failed":
                print(f"failed {name}: {detail}", file=sys.stderr, flush=True)
            elif outcome != "unchanged":
                print(f"{outcome:<8} {name} ({detail})", flush=True)

        _watch(mirror, args, live)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    failed = 0
    with _client(args) as client:
        for doc_id in args.doc_ids:
            try:
                revision = client.delete_document(doc_id, collection=args.collection)
            except (UnavailableError, UnimplementedError) as exc:
                raise _error(client, exc) from None
            except WikimemError as exc:
                failed += 1
                print(f"{doc_id}: {exc.message}", file=sys.stderr)
                continue
            print(f"deleted {doc_id} (rev {revision})")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_docs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            docs = list(client.list_documents(collection=args.collection))
        except WikimemError as exc:
            raise _error(client, exc) from None
    if args.json:
        for doc in docs:
            _json_line(document_to_dict(doc), sys.stdout)
        return EXIT_OK
    if not docs:
        print("no documents")
        return EXIT_OK
    width = min(60, max(len("doc_id"), *(len(d.doc_id) for d in docs)))
    print(f"{'doc_id':<{width}}  {'rev':>4}  {'chunks':>6}  {'chars':>8}  title")
    for d in docs:
        acl = f"  [acl: {', '.join(d.acl)}]" if d.acl else ""
        print(f"{d.doc_id:<{width}}  {d.revision:>4}  {d.chunk_count:>6}  {d.char_count:>8}  {d.title}{acl}")
    print(f"{len(docs)} documents")
    return EXIT_OK


def cmd_source(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            src = client.get_source(
                args.doc_id,
                args.revision,
                args.start,
                args.end,
                collection=args.collection,
                context_chars=args.context,
            )
        except WikimemError as exc:
            raise _error(client, exc) from None
    if args.json:
        _json_line(
            {
                "document": document_to_dict(src.document),
                "passage": src.passage,
                "before": src.before,
                "after": src.after,
            },
            sys.stdout,
        )
        return EXIT_OK
    doc = src.document
    print(f"{doc.title or doc.doc_id} — {doc.doc_id}@{doc.revision} chars {args.start}–{args.end}  ({doc.source})")
    print()
    tty = sys.stdout.isatty()
    passage = _bold(src.passage, True) if tty else f"[[{src.passage}]]"
    lead = "…" if len(src.before) < args.start else ""
    trail = "…" if args.end + len(src.after) < doc.char_count else ""
    print(f"{lead}{src.before}{passage}{src.after}{trail}")
    return EXIT_OK


#: Services `wikimem serve SERVICE` can run (the launcher package implements the command).
SERVICE_NAMES = ("embedder", "reranker", "reader", "memory", "orchestrator")


def cmd_serve_missing(_args: argparse.Namespace) -> int:
    raise CliError(
        "`wikimem serve` comes with the launcher package, which is not installed: "
        "pip install wikimem-launcher (or `make venv` in the repository)",
        EXIT_USAGE,
    )


def _plugins() -> dict[str, Any]:
    """CLI commands other packages add through the `wikimem.cli` entry point (e.g. `serve`), by name."""
    return {ep.name: ep for ep in entry_points(group="wikimem.cli")}


# --- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--addr", default=None, help=f"orchestrator address (default: $WIKIMEM_ADDR or {default_address()})"
    )
    common.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="connect with TLS (default: $WIKIMEM_TLS=1, or on when a CA file is given)",
    )
    common.add_argument(
        "--ca-file",
        default=None,
        help="PEM file of the CA to trust; implies --tls (default: $WIKIMEM_CA_FILE, else the system's CAs)",
    )
    common.add_argument(
        "--token",
        default=None,
        help="OIDC / JWT access token, sent as 'authorization: Bearer' (default: $WIKIMEM_TOKEN)",
    )
    common.add_argument(
        "--api-key",
        default=None,
        help="service-account API key (default: $WIKIMEM_API_KEY); see docs/security.md",
    )
    common.add_argument(
        "--groups",
        action="append",
        metavar="G[,G...]",
        help="your groups, for documents with an access list (repeatable or comma-separated)",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g}; {GENERATIVE_TIMEOUT_S:g} for generative readers)",
    )
    collection = argparse.ArgumentParser(add_help=False)
    collection.add_argument("--collection", default="", help="wiki collection (default: the default one)")

    parser = argparse.ArgumentParser(prog="wikimem", description="Question answering over a company wiki.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest",
        parents=[common, collection],
        help="add or update Markdown/text files or folders",
        description="Put Markdown (.md, .markdown) and text (.txt) files into the memory. The doc id "
        "is the path relative to the folder given (a file given directly: its name). Unchanged files "
        "are no-ops; nothing is ever deleted.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--acl", action="append", metavar="GROUP", help="restrict the documents to these groups")
    p.add_argument("--workers", type=int, default=4, help="concurrent uploads (default 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary and failures")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "sync",
        parents=[common, collection],
        help="mirror a folder into a collection (add, replace, delete)",
        description="Make the collection mirror PATH: new files are added, changed ones replaced, and "
        "documents whose file is gone are deleted, but only documents that a sync of this same folder "
        "put (metadata wikimem.sync_root); documents ingested otherwise are never deleted. Unchanged "
        "files are not sent. Doc ids are paths relative to PATH, as for ingest.",
    )
    p.add_argument("path", metavar="PATH", help="the folder to mirror")
    p.add_argument("--acl", action="append", metavar="GROUP", help="restrict the documents to these groups")
    p.add_argument("--watch", action="store_true", help="keep running and apply changes as they happen")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between checks with --watch (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; send nothing")
    p.add_argument("--workers", type=int, default=4, help="concurrent uploads (default 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary and failures")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "ask",
        parents=[common, collection],
        help="answer a question with citations",
        description="Answer a question from the wiki. QUESTION '-' reads one question per line from "
        "stdin (with --json: one JSON object per line out).",
    )
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--reader",
        default="",
        help="reader backend: extractive, local-llm or openai (default: the server's); the generative ones stream",
    )
    p.add_argument("--max-tokens", type=int, default=0, help="generative readers: answer tokens (default: server's)")
    p.add_argument(
        "--unsupported",
        choices=("drop", "flag"),
        default="",
        help="generative readers: drop sentences no passage supports, or keep them flagged (default: server's)",
    )
    p.add_argument("--no-cache", action="store_true", help="skip the answer cache")
    p.add_argument(
        "--no-qa-memory", action="store_true", help="do not reuse the answer of a similar earlier question"
    )
    p.add_argument(
        "--retrieval",
        choices=("dense", "bm25", "hybrid"),
        default="",
        help="how to retrieve: embeddings, BM25 or both fused (default: the server's WIKIMEM_RETRIEVAL_MODE)",
    )
    p.add_argument("--retrieve-k", type=int, default=0, help="chunks to retrieve (default: server's)")
    p.add_argument("--read-k", type=int, default=0, help="passages to read after reranking (default: server's)")
    p.add_argument("--passages", action="store_true", help="include the retrieved passages (with --json)")
    p.add_argument(
        "--stream", action="store_true", help="print the answer as it is produced (always, for generative readers)"
    )
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("delete", parents=[common, collection], help="delete documents")
    p.add_argument("doc_ids", nargs="+", metavar="DOC_ID")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("docs", parents=[common, collection], help="list documents")
    p.add_argument("--json", action="store_true", help="one JSON object per document and line")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("source", parents=[common, collection], help="show a cited passage in context")
    p.add_argument("doc_id", metavar="DOC_ID")
    p.add_argument("revision", type=int, metavar="REVISION")
    p.add_argument("start", type=int, metavar="START")
    p.add_argument("end", type=int, metavar="END")
    p.add_argument("--context", type=int, default=0, help="characters of context each side (default: server's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_source)

    plugins = _plugins()
    for ep in plugins.values():
        ep.load()(sub)
    if "serve" not in plugins:
        p = sub.add_parser("serve", help="run the services (needs the wikimem-launcher package)")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_serve_missing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if len(args_list) >= 2 and args_list[0] == "serve" and args_list[1] in SERVICE_NAMES:
        # One service with its own flags (e.g. --port-file), passed through untouched.
        plugin = _plugins().get("serve")
        if plugin is None:
            print("wikimem: `wikimem serve` needs the wikimem-launcher package (pip install wikimem-launcher)",
                  file=sys.stderr)
            return EXIT_USAGE
        run_one: Callable[[str, list[str]], int] = importlib.import_module(plugin.module).run_one
        return run_one(args_list[1], args_list[2:])
    args = build_parser().parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CliError as exc:
        print(f"wikimem: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("wikimem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
