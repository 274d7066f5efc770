"""python -m wikimem_orchestrator [--addr HOST:PORT] [--port-file PATH]"""

from wikimem_common.server import listen_address, parse_args, run

from .server import build


def main() -> None:
    listen = listen_address("orchestrator", parse_args("orchestrator").addr)
    run("orchestrator", lambda: build(listen=listen))


if __name__ == "__main__":
    main()
