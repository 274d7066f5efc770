"""Training loop (seeded, bf16 autocast on CUDA, per-epoch checkpoints with resume) and PyTorch scoring."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .features import pad_batch
from .model import freeze_word_embeddings, trainable_state

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitConfig:
    kind: str
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 32
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke)
    time_limit: float | None = None  # seconds; training stops after the step that passes it
    num_workers: int = 0
    ckpt_dir: Path | None = None
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def loss_fn(kind: str, model: nn.Module, batch: dict[str, torch.Tensor],
            extra: dict[str, Any] | None = None) -> torch.Tensor:
    if kind == "reranker":
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float()
        group = int(batch["group"])
        logits = logits.view(-1, group)  # column 0 is the positive
        return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
    start, end = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    pad = (1 - batch["attention_mask"]).float() * -1e4
    s, e = start.float() + pad, end.float() + pad
    hard = (F.cross_entropy(s, batch["start"]) + F.cross_entropy(e, batch["end"])) / 2
    if "soft" not in batch:
        return hard
    # distillation: soft = teacher probabilities at temperature T, [batch, 2, seq] (0 on padding)
    assert extra is not None
    t, alpha = float(extra["temperature"]), float(extra["alpha"])
    soft = batch["soft"].float()
    ce = -(soft[:, 0] * F.log_softmax(s / t, -1)).sum(-1) - (soft[:, 1] * F.log_softmax(e / t, -1)).sum(-1)
    return alpha * hard + (1 - alpha) * t * t * ce.mean() / 2


def fit(
    model: nn.Module,
    dataset: Dataset[Any],
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    cfg: FitConfig,
    device: torch.device,
    evaluate: Callable[[nn.Module, int], float] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Train; returns (best trainable state on CPU, per-epoch history). Best = highest evaluate() score."""
    seed_all(cfg.seed)
    freeze_word_embeddings(model)
    model.to(device)
    model.encoder.use_sdpa = device.type == "cuda"  # type: ignore[union-attr]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, fused=device.type == "cuda",
    )
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, generator=g,
                        num_workers=cfg.num_workers, persistent_workers=False,
                        pin_memory=device.type == "cuda", drop_last=len(dataset) > cfg.batch_size)  # type: ignore[arg-type]
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    start_epoch, history = 0, []
    best_score, best_state = -math.inf, {k: v.detach().cpu().clone() for k, v in trainable_state(model).items()}
    ck = cfg.ckpt_dir / "last.pt" if cfg.ckpt_dir else None
    if cfg.resume and ck is not None and ck.exists():
        saved = torch.load(ck, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        start_epoch, history = saved["epoch"] + 1, saved["history"]
        best_score, best_state = saved["best_score"], saved["best_state"]
        log.info("resumed from %s at epoch %d", ck, start_epoch)
    step = start_epoch * steps_per_epoch
    t_fit = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total or (cfg.time_limit is not None and time.time() - t_fit > cfg.time_limit):
            break
        dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        model.train()
        t0, losses = time.time(), []
        bar = tqdm(loader, desc=f"{cfg.kind} lr={cfg.lr:g} ep{epoch + 1}/{cfg.epochs}", mininterval=5, leave=False)
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with _autocast(device):
                loss = loss_fn(cfg.kind, model, batch, cfg.extra)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step >= total or (cfg.time_limit is not None and time.time() - t_fit > cfg.time_limit):
                break
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.time() - t0, "steps": len(losses)}
        if evaluate is not None:
            model.eval()
            rec["val"] = evaluate(model, epoch)
            model.train()
        score = rec.get("val", -float(rec["loss"]))
        if score > best_score:
            best_score = score
            best_state = {k: v.detach().cpu().clone() for k, v in trainable_state(model).items()}
        history.append(rec)
        log.info("%s lr=%g epoch %d: %s", cfg.kind, cfg.lr, epoch + 1, {k: round(v, 4) for k, v in rec.items()})
        if ck is not None:
            ck.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": trainable_state(model), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch, "history": history, "best_score": best_score, "best_state": best_state},
                       ck)
    model.eval()
    return best_state, history


# ---------------------------------------------------------------- PyTorch scoring (used for validation)


@torch.no_grad()
def torch_rerank_scores(model: nn.Module, ids: list[np.ndarray], types: list[np.ndarray], device: torch.device,
                        batch_size: int = 256) -> np.ndarray:
    model.eval()
    order = np.argsort([len(x) for x in ids])
    out = np.zeros(len(ids), np.float32)
    for i in range(0, len(ids), batch_size):
        idx = order[i : i + batch_size]
        a, m, t = pad_batch([ids[j] for j in idx], [types[j] for j in idx])
        with _autocast(device):
            logits = model(torch.from_numpy(a).to(device), torch.from_numpy(m).to(device),
                           torch.from_numpy(t).to(device))
        out[idx] = logits.float().squeeze(-1).cpu().numpy()
    return out


@torch.no_grad()
def torch_span_logits(model: nn.Module, ids: list[np.ndarray], types: list[np.ndarray], device: torch.device,
                      batch_size: int = 128) -> tuple[list[np.ndarray], list[np.ndarray]]:
    model.eval()
    order = np.argsort([len(x) for x in ids])
    starts: list[np.ndarray] = [np.zeros(0)] * len(ids)
    ends: list[np.ndarray] = [np.zeros(0)] * len(ids)
    for i in range(0, len(ids), batch_size):
        idx = order[i : i + batch_size]
        a, m, t = pad_batch([ids[j] for j in idx], [types[j] for j in idx])
        with _autocast(device):
            s, e = model(torch.from_numpy(a).to(device), torch.from_numpy(m).to(device),
                         torch.from_numpy(t).to(device))
        s_np, e_np = s.float().cpu().numpy(), e.float().cpu().numpy()
        for r, j in enumerate(idx):
            starts[j], ends[j] = s_np[r, : len(ids[j])], e_np[r, : len(ids[j])]
    return starts, ends
