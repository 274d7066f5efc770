"""`python -m wikimem_train <command>`: prepare | train | export | eval | ship | smoke | device-run | synth |
reader-job | export-embedder."""

from __future__ import annotations

import logging
import os
import sys

USAGE = """usage: python -m wikimem_train <command> [args]
  prepare                      split + BM25/dense hard negatives -> .cache/train/ (and .devcarry/)
  train reranker|reader        [--out DIR] [--max-examples N] [--epochs E] [--seed S] [--device auto] [--resume]
  export reranker|reader       ONNX fp32 + int8 (opset 17) and parity vs PyTorch
  eval reranker|reader         held-out metrics with ONNX Runtime [--onnx PATH] [--subset N]
  ship reranker|reader         copy the chosen ONNX + tokenizer + wikimem.json into models/<kind>/
  smoke                        tiny end-to-end check on CPU (CI)
  device-run                   the one-shot GPU job (--data .devcarry --out DIR)
  synth                        synthetic cloze QA for reader pre-training -> .devcarry/data/synthetic.jsonl.gz
  reader-job                   the reader's GPU job: pre-training, variants, distillation (--data .devcarry)
  export-embedder              all-MiniLM-L6-v2 -> dynamic int8 ONNX in models/embedder/ [--out DIR]"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    if cmd == "prepare":
        from .prepare import main as run
    elif cmd == "device-run":
        from .device_run import main as run
    elif cmd == "synth":
        from .synthetic import main as run
    elif cmd == "reader-job":
        from .reader_job import main as run
    elif cmd == "export-embedder":
        from .embedder_export import main as run
    elif cmd == "smoke":
        from .smoke import main as run
    elif cmd in ("train", "export", "eval", "ship"):
        from . import commands

        run = getattr(commands, f"cmd_{cmd}")
    else:
        print(USAGE)
        raise SystemExit(2)
    run(rest)
