"""python -m wikimem_orchestrator [--addr HOST:PORT] [--port-file PATH]"""

from wikimem_common.server import run

from .server import build


def main() -> None:
    run("orchestrator", build)


if __name__ == "__main__":
    main()
