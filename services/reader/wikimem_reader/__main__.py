"""`python -m wikimem_reader`."""

from wikimem_common.server import run

from .server import build

if __name__ == "__main__":
    run("reader", build)
