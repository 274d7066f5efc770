"""`python -m wikimem_embedder`."""

from wikimem_common.server import run

from .server import build

if __name__ == "__main__":
    run("embedder", build)
