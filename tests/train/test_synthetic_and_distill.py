"""Synthetic cloze QA (reader pre-training data) and the distillation loss."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from wikimem_train.synthetic import (
    Doc,
    answer_candidates,
    generate,
    make_question,
    read_synthetic,
    split_sentences,
    write_synthetic,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

DOC = Doc("test", [
    "Marie Curie was born in Warsaw on 7 November 1867, e.g. in the Russian partition. She moved to Paris in 1891 "
    "to study physics at the Sorbonne. Marie Curie shared the Nobel Prize in Physics with Pierre Curie in 1903.",
    "Warsaw is the capital and largest city of Poland, with about 1.8 million residents. The Sorbonne is a "
    "university in Paris whose name goes back to the college founded by Robert de Sorbon in 1257.",
    "Radioactivity was studied in Paris by Henri Becquerel before Marie Curie extended his work on uranium rays. "
    "Becquerel had found in 1896 that uranium salts emitted rays that fogged a photographic plate.",
])


def test_sentences_split_at_sentence_ends_but_not_after_abbreviations() -> None:
    text = DOC.passages[0]
    sents = [text[s:e] for s, e in split_sentences(text)]
    assert len(sents) == 3
    assert sents[0].endswith("partition.") and sents[1].startswith("She moved")


def test_answer_candidates_are_names_dates_and_numbers_not_fragments() -> None:
    s = "She paid $3.5 million on 12 March 1995 to Ad-Trav at (877) 472-6716 for the Nobel Prize."
    found = {s[a:b]: kind for a, b, kind in answer_candidates(s, set())}
    assert found.get("$3.5 million") == "number" and found.get("12 March 1995") == "date"
    assert "Nobel Prize" in found and "472" not in found and "6716" not in found


def test_cloze_question_hides_the_answer_and_asks_with_a_wh_word() -> None:
    sentence = "Marie Curie shared the Nobel Prize in Physics with Pierre Curie in 1903."
    i = sentence.index("1903")
    q = make_question(sentence, i, i + 4, "year", random.Random(0))
    assert "1903" not in q and "when" in q.lower() and q.endswith("?")


def test_generated_answers_sit_at_their_offsets_and_round_trip(tmp_path: Path) -> None:
    gens = [generate([DOC], seed=s, per_sentence=3) for s in range(6)]
    assert {"near", "far", "none"} <= {ex["t"] for g in gens for ex in g.examples}
    for g in gens:
        for ex in g.examples:
            ctx = g.contexts[ex["c"]]
            if ex["s"] < 0:
                assert ex["a"] == ""
            else:
                assert ctx[ex["s"] : ex["s"] + len(ex["a"])] == ex["a"]
                assert ex["a"].lower() not in ex["q"].lower()
    gen = gens[0]
    path = tmp_path / "s.jsonl.gz"
    assert write_synthetic(gen, path) == len(gen.examples)
    back = read_synthetic(path)
    assert back.contexts == gen.contexts and back.examples == gen.examples


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "squad-v1.1-dev").is_dir(), reason=f"needs SQuAD at {SHARED} (../shared/data)")
def test_squad_text_for_synthetic_data_comes_only_from_training_articles() -> None:
    from wikimem_train.data import load_split, load_squad
    from wikimem_train.synthetic import squad_docs

    passages, _ = load_squad(SHARED)
    split = load_split()
    banned = {p.text for p in passages if p.title in set(split["validation"]) | set(split["heldout"])}
    allowed = {p.text for p in passages if p.title in set(split["train"])}
    texts = [t for d in squad_docs(SHARED) for t in d.passages]
    assert texts and all(t in allowed and t not in banned for t in texts)


def test_distillation_loss_with_one_hot_teachers_equals_the_hard_loss() -> None:
    torch = pytest.importorskip("torch")
    from wikimem_train.model import BertConfig, SpanReader
    from wikimem_train.train import loss_fn

    torch.manual_seed(0)
    model = SpanReader(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64)).eval()
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
             "start": torch.tensor([1, 0, 4]), "end": torch.tensor([2, 0, 5])}
    hard = loss_fn("reader", model, batch)
    soft = torch.zeros(3, 2, 9)
    for r in range(3):
        soft[r, 0, batch["start"][r]] = 1.0
        soft[r, 1, batch["end"][r]] = 1.0
    only_soft = loss_fn("reader", model, {**batch, "soft": soft}, {"temperature": 1.0, "alpha": 0.0})
    assert torch.allclose(hard, only_soft, atol=1e-5)
    uniform = torch.full((3, 2, 9), 1 / 9)
    mixed = loss_fn("reader", model, {**batch, "soft": uniform}, {"temperature": 2.0, "alpha": 0.5})
    assert not torch.allclose(hard, mixed)
