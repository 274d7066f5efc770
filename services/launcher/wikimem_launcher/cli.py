"""The `serve` command of the `wikimem` CLI, registered through the `wikimem.cli` entry point."""

from __future__ import annotations

import argparse
from typing import Any

from .launcher import SERVICES, serve_all, serve_in_process, serve_one


def cmd_serve(args: argparse.Namespace) -> int:
    if args.service:
        return serve_one(args.service, list(args.service_args))
    if args.in_process:
        return serve_in_process(args.addr, args.data)
    return serve_all(args.addr, args.data, args.log_dir)


def register(sub: Any) -> None:
    """Add `serve` to the CLI's subparsers (`sub` is argparse's _SubParsersAction)."""
    p = sub.add_parser(
        "serve",
        help="run all services (or one: SERVICE) in the foreground",
        description="Without SERVICE: start all five services as child processes and wait until "
        "SIGINT/SIGTERM. With SERVICE: run just that one (extra flags such as --port-file are "
        "passed to it).",
    )
    p.add_argument("service", nargs="?", choices=SERVICES, metavar="SERVICE", help=" | ".join(SERVICES))
    p.add_argument("--addr", default=None, help="orchestrator address (default: $WIKIMEM_ADDR or 127.0.0.1:50051)")
    p.add_argument("--data", default=None, help="memory data directory (default: $WIKIMEM_DATA or ./.wikimem)")
    p.add_argument("--log-dir", default=None, help="service logs (default: DATA/logs)")
    p.add_argument("--in-process", action="store_true", help="run all five in this process (threads)")
    p.set_defaults(func=cmd_serve, service_args=[])


def run_one(name: str, argv: list[str]) -> int:
    """`wikimem serve SERVICE ARGS...` (the CLI hands the raw arguments over untouched)."""
    return serve_one(name, argv)
