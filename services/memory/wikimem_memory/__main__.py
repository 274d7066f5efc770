"""`python -m wikimem_memory`: serve wikimem.v1.Memory."""

from wikimem_common.server import run

from .server import build


def main() -> None:
    run("memory", build)


if __name__ == "__main__":
    main()
