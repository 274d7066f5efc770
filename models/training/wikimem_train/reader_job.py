"""`reader-job`: one GPU job for the reader — synthetic cloze pre-training, fine-tuning variants, ensemble
distillation, selection on the validation articles only, then held-out metrics for the pick alone.

Steps (each guarded by --budget seconds; later variants are skipped when they would not fit):
  1. pre-train on synthetic cloze QA (`synthetic`), time-boxed by --pt-seconds;
  2. fine-tune variants on the SQuAD training articles (init from the pre-trained or the base encoder);
  3. distil the ensemble of the finished variants into one student (soft start/end targets);
  4. pick the best variant by validation EM (tie: F1), choose max_answer_tokens and the no-answer threshold on
     validation, evaluate the pick once on the held-out articles, save its fp16 weights (no word embeddings).
Writes metrics.json (rewritten after each step) and reader-NN.safetensors to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .datasets import ReaderExamples, SyntheticSpans, collate_spans, load_passages, load_rows
from .distill import DistillSpans, SpanFn, collate_distill, ensemble_span_fn
from .evaluation import em_f1, reader_metrics, reader_scores
from .model import load_base, save_shards
from .synthetic import read_synthetic
from .train import FitConfig, fit, pick_device, torch_span_logits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    init: str  # "base" (sentence-transformers encoder) or "pt" (after synthetic pre-training)
    lr: float
    epochs: int
    seed: int
    distill: bool = False


def parse_variants(spec: str) -> list[Variant]:
    """"A=pt/1e-4/4/0,D=pt/1e-4/4/2/distill" -> variants (name=init/lr/epochs/seed[/distill])."""
    out = []
    for item in filter(None, spec.split(",")):
        name, rest = item.split("=")
        parts = rest.split("/")
        if parts[0] not in ("base", "pt") or len(parts) not in (4, 5) or parts[4:] not in ([], ["distill"]):
            raise SystemExit(f"bad variant {item!r}: want name=base|pt/lr/epochs/seed[/distill]")
        out.append(Variant(name, parts[0], float(parts[1]), int(parts[2]), int(parts[3]), len(parts) == 5))
    return out


class ReaderJob:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.t0 = time.time()
        self.device = pick_device(a.device)
        self.data = a.data / "data"
        self.base = a.base or a.data / "base"
        self.tok = self.base / "tokenizer.json"
        self.out: Path = a.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.passages = load_passages(self.data)
        self.train = ReaderExamples(load_rows(self.data, "reader_train", a.max_examples), self.passages, self.tok, 0)
        self.val = load_rows(self.data, "reader_val", a.max_eval)
        self.pt_state: dict[str, torch.Tensor] | None = None
        self.states: dict[str, dict[str, torch.Tensor]] = {}
        self.epoch_seconds = a.epoch_guess
        self.metrics: dict[str, Any] = {
            "host": platform.node(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if self.device.type == "cuda" else "cpu",
            "args": {k: str(v) for k, v in vars(a).items()}, "train_items_per_epoch": len(self.train),
            "variants": {}, "skipped": [],
        }
        log.info("reader-job: %d training windows/epoch, %d validation questions, loaded at %.0fs",
                 len(self.train), len(self.val), self.elapsed())

    def elapsed(self) -> float:
        return time.time() - self.t0

    def dump(self) -> None:
        self.metrics["elapsed_s"] = self.elapsed()
        (self.out / "metrics.json").write_text(json.dumps(self.metrics, indent=2))

    # -------------------------------------------------------------- models

    def model_from(self, state: dict[str, torch.Tensor] | None, seed: int = 0) -> nn.Module:
        model = load_base("reader", self.base, seed)
        if state is not None:
            model.load_state_dict(state, strict=False)
        model.to(self.device).eval()
        model.encoder.use_sdpa = self.device.type == "cuda"  # type: ignore[union-attr]
        return model

    def span_fn(self, model: nn.Module) -> SpanFn:
        return lambda ids, types: torch_span_logits(model, ids, types, self.device, batch_size=256)

    def val_em_f1(self, span: SpanFn, rows: list[dict[str, Any]] | None = None,
                  max_answer_tokens: int = 30) -> tuple[float, float]:
        rows = [r for r in (rows or self.val) if r["all_answers"]]
        res = reader_scores(span, rows, self.passages, self.tok, max_answer_tokens)
        return em_f1(rows, res["pred"])

    def _cfg(self, lr: float, epochs: int, bs: int, seed: int, **kw: Any) -> FitConfig:
        return FitConfig(kind="reader", epochs=epochs, lr=lr, batch_size=bs, seed=seed, max_steps=self.a.max_steps,
                         num_workers=self.a.num_workers, **kw)

    # -------------------------------------------------------------- steps

    def pretrain(self) -> None:
        a = self.a
        contexts: list[str] = []
        examples: list[dict[str, Any]] = []
        for path in a.synthetic:  # several files (e.g. another seed of the in-domain sources) are concatenated
            gen = read_synthetic(path)
            examples += [{**ex, "c": ex["c"] + len(contexts)} for ex in gen.examples]
            contexts += gen.contexts
        random.Random(a.seed).shuffle(examples)
        examples = examples[: a.pt_examples]
        ds = SyntheticSpans(contexts, examples, self.tok)
        log.info("synthetic: %d windows (%d dropped), tokenised at %.0fs", len(ds), ds.dropped, self.elapsed())
        scores: list[dict[str, float]] = []

        def ev(m: nn.Module, epoch: int) -> float:
            em, f1 = self.val_em_f1(self.span_fn(m))
            scores.append({"val_em": em, "val_f1": f1})
            return em

        t = time.time()
        cfg = self._cfg(a.pt_lr, a.pt_epochs, a.pt_batch, a.seed, time_limit=a.pt_seconds)
        self.pt_state, hist = fit(load_base("reader", self.base, a.seed), ds, collate_spans, cfg, self.device, ev)
        for h, s in zip(hist, scores, strict=False):
            h.update(s)
        self.metrics["pretrain"] = {"examples": len(examples), "windows": len(ds), "dropped": ds.dropped,
                                    "lr": a.pt_lr, "batch": a.pt_batch, "history": hist, "seconds": time.time() - t}
        self.dump()
        log.info("pre-training done in %.0fs: %s", time.time() - t, hist)

    def teachers(self) -> list[str]:
        done = {n: r for n, r in self.metrics["variants"].items() if not r["spec"]["distill"]}
        if not done:
            return []
        best = max(r["val_em"] for r in done.values())
        return [n for n, r in done.items() if r["val_em"] >= best - self.a.teacher_margin]

    def run_variant(self, v: Variant) -> None:
        a = self.a
        if v.init == "pt" and self.pt_state is None:
            self.metrics["skipped"].append({"name": v.name, "why": "no pre-trained state"})
            return
        t = time.time()
        extra: dict[str, Any] = {}
        ds: Any = self.train
        collate: Any = collate_spans
        info: dict[str, Any] = {"spec": asdict(v)}
        if v.distill:
            names = self.teachers()
            if len(names) < 2:
                self.metrics["skipped"].append({"name": v.name, "why": f"needs 2 teachers, have {names}"})
                return
            models = [self.model_from(self.states[n]) for n in names]
            fns = [self.span_fn(m) for m in models]
            em, f1 = self.val_em_f1(ensemble_span_fn(fns))
            self.metrics["ensemble"] = {"teachers": names, "val_em": em, "val_f1": f1}
            log.info("ensemble of %s: validation EM %.2f F1 %.2f", names, em, f1)
            ds = DistillSpans(self.train, fns, a.temperature)
            collate = collate_distill
            extra = {"temperature": a.temperature, "alpha": a.alpha}
            info.update({"teachers": names, "temperature": a.temperature, "alpha": a.alpha,
                         "teacher_seconds": time.time() - t})
            del models, fns
        model = load_base("reader", self.base, v.seed)
        if v.init == "pt":
            assert self.pt_state is not None
            model.load_state_dict(self.pt_state, strict=False)
        scores: list[dict[str, float]] = []

        def ev(m: nn.Module, epoch: int) -> float:
            em, f1 = self.val_em_f1(self.span_fn(m))
            scores.append({"val_em": em, "val_f1": f1})
            return em + f1 / 1000  # EM first, F1 breaks ties

        state, hist = fit(model, ds, collate, self._cfg(v.lr, v.epochs, a.batch, v.seed, extra=extra), self.device, ev)
        for h, s in zip(hist, scores, strict=False):
            h.update(s)
        best = max(hist, key=lambda h: h["val_em"] + h["val_f1"] / 1000)
        info.update({"history": hist, "val_em": best["val_em"], "val_f1": best["val_f1"], "best_epoch": best["epoch"],
                     "seconds": time.time() - t})
        self.metrics["variants"][v.name] = info
        self.states[v.name] = state
        self.epoch_seconds = max(self.epoch_seconds * 0.5, float(np.mean([h["seconds"] for h in hist])) + 2.0)
        self.dump()
        log.info("variant %s: validation EM %.2f F1 %.2f (epoch %d) in %.0fs, elapsed %.0fs", v.name, best["val_em"],
                 best["val_f1"], best["epoch"], time.time() - t, self.elapsed())

    def fits(self, v: Variant) -> bool:
        cost = v.epochs * self.epoch_seconds + (20.0 if v.distill else 5.0)
        return self.elapsed() + cost <= self.a.budget - self.a.reserve

    def run_all(self, variants: list[Variant]) -> None:
        todo = list(variants)
        while todo:
            v = todo[0]
            best = max((r["val_em"] for r in self.metrics["variants"].values()), default=None)
            if v.distill and best is not None and best < self.a.baseline_val:
                base_first = [w for w in todo if w.init == "base" and not w.distill]
                if base_first:  # pre-trained variants under the baseline: get the base-init teacher first
                    v = base_first[0]
            todo.remove(v)
            if not self.fits(v):
                log.info("skipping %s (time budget: elapsed %.0fs, ~%.0fs/epoch)", v.name, self.elapsed(),
                         self.epoch_seconds)
                self.metrics["skipped"].append({"name": v.name, "why": "time budget"})
                continue
            try:
                self.run_variant(v)
            except BaseException as e:  # a failing variant (even a tokenizer panic) must not end the run
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                log.exception("variant %s failed", v.name)
                self.metrics["skipped"].append({"name": v.name, "why": f"failed: {e!r}"})

    def finish(self) -> None:
        a = self.a
        runs = self.metrics["variants"]
        if not runs:
            raise SystemExit("no variant finished")
        pick = max(runs, key=lambda n: runs[n]["val_em"] + runs[n]["val_f1"] / 1000)
        model = self.model_from(self.states[pick])
        span = self.span_fn(model)
        sweep = {}
        for n in a.answer_lengths:
            em, f1 = self.val_em_f1(span, max_answer_tokens=n)
            sweep[n] = {"val_em": em, "val_f1": f1}
        length = max(sweep, key=lambda n: (round(sweep[n]["val_em"], 6), sweep[n]["val_f1"], n))
        save_shards(self.states[pick], self.out, "reader")
        val = reader_metrics(span, self.val, self.passages, self.tok, None, length)
        thr = float(val["abstention"]["threshold"])
        self.metrics["pick"] = {"name": pick, "spec": runs[pick]["spec"], "answer_length_sweep": sweep,
                                "max_answer_tokens": length, "validation": val, "no_answer_threshold": thr}
        self.dump()
        log.info("pick %s (validation EM %.2f F1 %.2f, max_answer_tokens %d, threshold %.3f); held-out next", pick,
                 val["em"], val["f1"], length, thr)
        held = load_rows(self.data, "reader_eval", a.max_eval)
        self.metrics["pick"]["heldout_torch_bf16"] = reader_metrics(span, held, self.passages, self.tok, thr, length)
        if length != 30:
            self.metrics["pick"]["heldout_torch_bf16_len30"] = dict(zip(("em", "f1"), self.val_em_f1(span, held, 30),
                                                                         strict=True))
        self.metrics["done"] = True
        self.dump()
        h = self.metrics["pick"]["heldout_torch_bf16"]
        log.info("held-out (pick %s): EM %.2f F1 %.2f abstention %s", pick, h["em"], h["f1"],
                 json.dumps(h["abstention"]))


def _paths(s: str) -> list[Path]:
    return [Path(x) for x in s.split(",") if x]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train reader-job")
    ap.add_argument("--data", type=Path, required=True, help="carry folder with data/ and base/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", type=Path, default=None, help="base weights folder (default DATA/base)")
    ap.add_argument("--synthetic", type=_paths, default=None,
                    help="comma list of files from `synth` (default DATA/data/synthetic.jsonl.gz)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pt-examples", type=int, default=None)
    ap.add_argument("--pt-epochs", type=int, default=1)
    ap.add_argument("--pt-lr", type=float, default=1e-4)
    ap.add_argument("--pt-batch", type=int, default=64)
    ap.add_argument("--pt-seconds", type=float, default=100.0)
    ap.add_argument("--variants", type=parse_variants,
                    default=parse_variants("A=pt/1e-4/4/0,B=pt/5e-5/4/1,D=pt/1e-4/4/2/distill,C=base/1e-4/6/3"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the hard loss when distilling")
    ap.add_argument("--teacher-margin", type=float, default=3.0, help="teachers: val EM within this of the best")
    ap.add_argument("--baseline-val", type=float, default=64.0, help="shipped model's validation EM")
    ap.add_argument("--answer-lengths", type=_ints, default=[30, 20, 15])
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--max-eval", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for the whole job")
    ap.add_argument("--reserve", type=float, default=35.0, help="seconds kept for the pick's evaluation")
    ap.add_argument("--epoch-guess", type=float, default=14.0)
    ap.add_argument("--skip-pretrain", action="store_true")
    a = ap.parse_args(argv)
    a.synthetic = a.synthetic or [a.data / "data" / "synthetic.jsonl.gz"]
    if pick_device(a.device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    job = ReaderJob(a)
    if not a.skip_pretrain:
        try:
            job.pretrain()
        except BaseException as e:  # the base-initialised variants can still run
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            log.exception("pre-training failed")
            job.metrics["pretrain_error"] = repr(e)
    job.run_all(a.variants)
    job.finish()
    log.info("done in %.0fs", job.elapsed())
