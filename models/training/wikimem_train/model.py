"""A minimal BERT encoder (all-MiniLM-L6-v2 layout) in plain PyTorch, with reranker and reader heads.

Plain torch keeps the GPU run independent of the transformers version there and gives a clean ONNX graph.
Parameter names match the sentence-transformers safetensors ("embeddings.*", "encoder.layer.N.*").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WORD_EMB = "encoder.embeddings.word_embeddings.weight"


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class _Linear(nn.Module):
    """Holds `dense` (+ optional LayerNorm) so that names match BERT checkpoints."""

    def __init__(self, d_in: int, d_out: int, ln_eps: float | None) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        if ln_eps is not None:
            self.LayerNorm = nn.LayerNorm(d_out, eps=ln_eps)


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.h = c.num_attention_heads
        self.d = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.p_drop = c.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, bias: torch.Tensor, use_sdpa: bool) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.h, self.d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        p = self.p_drop if self.training else 0.0
        if use_sdpa:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p)
        else:
            att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d) + bias
            att = F.dropout(torch.softmax(att, dim=-1), p=p, training=self.training)
            ctx = torch.matmul(att, v)
        return ctx.transpose(1, 2).reshape(b, n, self.h * self.d)


class Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(c)
        self.output = _Linear(c.hidden_size, c.hidden_size, c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)


class Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = _Linear(c.hidden_size, c.intermediate_size, None)
        self.output = _Linear(c.intermediate_size, c.hidden_size, c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, use_sdpa: bool) -> torch.Tensor:
        a = self.attention
        h = a.output.LayerNorm(x + a.drop(a.output.dense(a.self(x, bias, use_sdpa))))
        f = self.output.dense(F.gelu(self.intermediate.dense(h)))
        return self.output.LayerNorm(h + self.drop(f))


class Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(c)
        self.layer = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.use_sdpa = False

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layer:
            x = layer(x, bias, self.use_sdpa)
        return x


class CrossEncoder(nn.Module):
    """Reranker: one relevance logit from a linear head on the [CLS] state."""

    kind = "reranker"

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.encoder = Encoder(c)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.head = nn.Linear(c.hidden_size, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        return self.head(self.dropout(h[:, 0]))


class SpanReader(nn.Module):
    """Reader: start/end logits per token from a linear head."""

    kind = "reader"

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.encoder = Encoder(c)
        self.head = nn.Linear(c.hidden_size, 2)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.head(h)
        return logits[..., 0], logits[..., 1]


def build(kind: str, config: BertConfig) -> nn.Module:
    if kind == "reranker":
        return CrossEncoder(config)
    if kind == "reader":
        return SpanReader(config)
    raise ValueError(f"unknown model kind {kind!r}")


def _init_head(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    head = model.head
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
        head.bias.zero_()


def load_base(kind: str, base_dir: Path, seed: int = 0) -> nn.Module:
    """Model with encoder weights from base_dir (model.fp16.safetensors or model.safetensors), fp32."""
    from safetensors.torch import load_file

    config = BertConfig.from_json(base_dir / "config.json")
    model = build(kind, config)
    f = base_dir / "model.fp16.safetensors"
    state = load_file(str(f if f.exists() else base_dir / "model.safetensors"))
    enc = {
        k.removeprefix("encoder."): v.float()
        for k, v in state.items()
        if not k.startswith("pooler.") and k != "embeddings.position_ids"
    }
    missing, unexpected = model.encoder.load_state_dict(enc, strict=False)  # type: ignore[union-attr]
    if missing or unexpected:
        raise RuntimeError(f"base weights mismatch: missing={missing} unexpected={unexpected}")
    _init_head(model, seed)
    return model


def save_fp16_base(src: Path, dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    out = {k: v.half().contiguous() for k, v in state.items() if v.is_floating_point() and not k.startswith("pooler.")}
    save_file(out, str(dst))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Everything except the frozen word embeddings."""
    return {k: v for k, v in model.state_dict().items() if k != WORD_EMB}


def freeze_word_embeddings(model: nn.Module) -> None:
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)  # type: ignore[union-attr]


def save_shards(state: dict[str, torch.Tensor], out_dir: Path, prefix: str, max_bytes: int = 15 * 2**20) -> list[Path]:
    """Save tensors as fp16 safetensors shards of at most max_bytes each."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(state):
        t = state[k].detach().to("cpu", torch.float16).contiguous()
        nbytes = t.numel() * 2
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += nbytes
    paths = []
    for i, sh in enumerate(shards):
        p = out_dir / f"{prefix}-{i:02d}.safetensors"
        save_file(sh, str(p))
        paths.append(p)
    return paths


def load_trained(kind: str, base_dir: Path, shard_paths: list[Path]) -> nn.Module:
    """Rebuild a full fp32 model: base (frozen) word embeddings + trained shards."""
    from safetensors.torch import load_file

    model = load_base(kind, base_dir)
    state: dict[str, torch.Tensor] = {}
    for p in shard_paths:
        state.update({k: v.float() for k, v in load_file(str(p)).items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {WORD_EMB}:
        raise RuntimeError(f"trained weights mismatch: missing={missing} unexpected={unexpected}")
    return model
