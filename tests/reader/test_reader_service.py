"""The reader over gRPC with our trained span extractor (models/reader): answers, abstention, spans, streaming."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from wikimem_common import server as wserver
from wikimem_common.modeldir import model_dir
from wikimem_contract.v1 import reader_pb2, reader_pb2_grpc
from wikimem_reader.backend import Passage
from wikimem_reader.config import MODEL_DIR_ENV, ExtractiveConfig, ReaderConfig
from wikimem_reader.extractive import ExtractiveReader
from wikimem_reader.server import create, registrar
from wikimem_reader.service import Reader

MODEL_DIR = model_dir("reader", MODEL_DIR_ENV)

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "wikimem.json").is_file(),
    reason=f"no trained reader at {MODEL_DIR}; train it (models/training) or set {MODEL_DIR_ENV}",
)

EIFFEL = "The Eiffel Tower is located in Paris."
LASAGNA = "The cafeteria serves vegetarian lasagna on Fridays."


@pytest.fixture(scope="module")
def core() -> Iterator[Reader]:
    reader = create(ReaderConfig(), ExtractiveConfig.from_env(MODEL_DIR))
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def stub(core: Reader) -> Iterator[reader_pb2_grpc.ReaderStub]:
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    yield reader_pb2_grpc.ReaderStub(channel)
    channel.close()
    handle.stop(grace=0)


def read(stub: reader_pb2_grpc.ReaderStub, question: str, texts: list[str], **options: Any) -> reader_pb2.ReadResponse:
    passages = [reader_pb2.ReadPassage(id=f"p{i}", text=t) for i, t in enumerate(texts)]
    return stub.Read(
        reader_pb2.ReadRequest(question=question, passages=passages, options=reader_pb2.ReadOptions(**options))
    )


def test_answers_paris(stub: reader_pb2_grpc.ReaderStub) -> None:
    response = read(stub, "Where is the Eiffel Tower located?", [EIFFEL])
    assert not response.abstained, response.abstain_reason
    answer = response.answers[0]
    assert "Paris" in answer.text and len(answer.text) <= len("in Paris."), answer.text
    assert EIFFEL[answer.start : answer.end] == answer.text
    assert response.backend == "extractive"
    assert {"tokenize", "infer", "decode", "total"} <= set(response.timings_ms)


def test_abstains_on_unrelated_passage(stub: reader_pb2_grpc.ReaderStub) -> None:
    response = read(stub, "Where is the Eiffel Tower located?", [LASAGNA])
    assert response.abstained
    assert list(response.answers) == []
    assert "no supported answer" in response.abstain_reason and "threshold" in response.abstain_reason


def test_picks_the_passage_that_holds_the_answer(stub: reader_pb2_grpc.ReaderStub) -> None:
    texts = [
        LASAGNA,
        "Expense reports are due on the fifth working day of each month.",
        "New employees receive 25 days of paid vacation per year.",
    ]
    response = read(stub, "How many vacation days do new employees receive?", texts)
    assert not response.abstained, response.abstain_reason
    answer = response.answers[0]
    assert answer.passage_index == 2
    assert "25" in answer.text


def test_finds_an_answer_beyond_the_first_window(stub: reader_pb2_grpc.ReaderStub) -> None:
    filler = "The weather report mentioned light rain and mild temperatures for the coming days. " * 40
    text = filler + "The access code for the server room is 4711. " + filler
    response = read(stub, "What is the access code for the server room?", [text])
    assert not response.abstained, response.abstain_reason
    answer = response.answers[0]
    assert "4711" in answer.text
    assert answer.start > len(filler) - 1
    assert text[answer.start : answer.end] == answer.text


def test_threshold_override(stub: reader_pb2_grpc.ReaderStub) -> None:
    strict = read(stub, "Where is the Eiffel Tower located?", [EIFFEL], no_answer_threshold=1e6)
    assert strict.abstained and "< threshold 1000000.00" in strict.abstain_reason
    lax = read(stub, "Where is the Eiffel Tower located?", [LASAGNA], no_answer_threshold=-1e6)
    assert not lax.abstained and lax.answers[0].text


def test_no_passages_abstains(stub: reader_pb2_grpc.ReaderStub) -> None:
    response = read(stub, "Where is the Eiffel Tower located?", [])
    assert response.abstained and response.abstain_reason == "no passages"
    blank = read(stub, "Where is the Eiffel Tower located?", ["   ", ""])
    assert blank.abstained


NON_ASCII = [
    "Der Münchner Hauptbahnhof liegt westlich der Altstadt; Züge fahren nach Zürich und Wien. 🚆",
    "東京タワーは東京都港区にある電波塔です。高さは333メートルです。",
    "Le café « Chez Zoë » ouvre à 7 h 30 et ferme à 19 h — réservations au 01 23 45 67 89.",
    "Ｆｕｌｌｗｉｄｔｈ letters, ﬁ ligatures, İstanbul, straße, x\u0301y combining marks and emoji 👩‍💻 end.",
    "Ελληνικά: η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Русский: Москва — столица России.",
]


def test_spans_point_into_passages_on_many_cases(stub: reader_pb2_grpc.ReaderStub) -> None:
    rng = random.Random(7)
    words = " ".join(NON_ASCII).split()
    cases = [*NON_ASCII, EIFFEL, LASAGNA]
    cases += [" ".join(rng.choice(words) for _ in range(rng.randint(5, 400))) for _ in range(8)]
    questions = ["Where is it?", "What is the height?", "When does it open?", "Was ist das?"]
    for i in range(0, len(cases), 3):
        texts = cases[i : i + 3]
        response = read(stub, questions[i % len(questions)], texts, max_answers=5, no_answer_threshold=-1e6)
        assert not response.abstained
        assert 1 <= len(response.answers) <= 5
        scores = [a.score for a in response.answers]
        assert scores == sorted(scores, reverse=True)
        for answer in response.answers:
            passage = texts[answer.passage_index]
            assert answer.text and passage[answer.start : answer.end] == answer.text
            assert answer.start < answer.end <= len(passage)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def test_window_offsets_map_tokens_to_passage_characters(core: Reader) -> None:
    """Every passage token's offsets cover exactly the characters it came from (code points, not bytes)."""
    backend = core.backends["extractive"]
    assert isinstance(backend, ExtractiveReader)
    long_text = " ".join(NON_ASCII) * 12
    passages = [Passage(f"p{i}", t) for i, t in enumerate([*NON_ASCII, long_text])]
    windows = backend.windows("question?", passages)
    assert sum(w.passage_index == len(NON_ASCII) for w in windows) > 1  # the long passage is split
    vocab = backend.tokenizer
    for window in windows:
        text = passages[window.passage_index].text
        tokens = window.ids[window.context_start : window.context_start + len(window.offsets)]
        for token_id, (start, end) in zip(tokens, window.offsets, strict=True):
            token = (vocab.id_to_token(token_id) or "").removeprefix("##")
            if token == "[UNK]":
                continue
            assert _fold(text[start:end]).replace("\u0307", "") == _fold(token), (text[start:end], token)


def test_stream_yields_delta_then_result(stub: reader_pb2_grpc.ReaderStub) -> None:
    request = reader_pb2.ReadStreamRequest(
        question="Where is the Eiffel Tower located?", passages=[reader_pb2.ReadPassage(id="a", text=EIFFEL)]
    )
    events = list(stub.ReadStream(request))
    assert events[-1].WhichOneof("event") == "result"
    deltas = [e.delta for e in events[:-1]]
    assert all(e.WhichOneof("event") == "delta" for e in events[:-1])
    result = events[-1].result
    assert not result.abstained and "".join(deltas) == result.answers[0].text
    abstaining = reader_pb2.ReadStreamRequest(
        question="Where is the Eiffel Tower located?", passages=[reader_pb2.ReadPassage(id="b", text=LASAGNA)]
    )
    events = list(stub.ReadStream(abstaining))
    assert len(events) == 1 and events[0].result.abstained


def test_stream_of_several_candidates_sends_no_delta(stub: reader_pb2_grpc.ReaderStub) -> None:
    """Asked for candidates (the orchestrator's answer policy), the span reader streams none of them: the caller
    decides which, if any, answers."""
    request = reader_pb2.ReadStreamRequest(
        question="Where is the Eiffel Tower located?",
        passages=[reader_pb2.ReadPassage(id="a", text=EIFFEL), reader_pb2.ReadPassage(id="b", text=LASAGNA)],
        options=reader_pb2.ReadOptions(max_answers=5, no_answer_threshold=-1.0e4),
    )
    events = list(stub.ReadStream(request))
    assert [e.WhichOneof("event") for e in events] == ["result"]
    answers = events[0].result.answers
    assert len(answers) >= 2 and "Paris" in answers[0].text
    assert {a.passage_index for a in answers} == {0, 1}  # threshold off: the unrelated passage's spans come too


@pytest.mark.parametrize(
    ("question", "texts", "options", "fragment"),
    [
        ("", [EIFFEL], {}, "question must not be empty"),
        ("Where?", [EIFFEL], {"backend": "gpt-9"}, "unknown reader backend 'gpt-9'; available: extractive, local-llm"),
        ("Where?", [EIFFEL] * 65, {}, "65 passages in one request; the limit is 64"),
        ("Where?", [EIFFEL, "x" * 100_001], {}, "passages[1].text is 100001 characters"),
        ("Where?", [EIFFEL], {"max_answers": 21}, "max_answers=21; the limit is 20"),
        ("Where?", [EIFFEL], {"no_answer_threshold": float("nan")}, "no_answer_threshold must be a finite number"),
    ],
)
def test_invalid_requests(
    stub: reader_pb2_grpc.ReaderStub, question: str, texts: list[str], options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        read(stub, question, texts, **options)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")
    stream = reader_pb2.ReadStreamRequest(
        question=question,
        passages=[reader_pb2.ReadPassage(text=t) for t in texts],
        options=reader_pb2.ReadOptions(**options),
    )
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ReadStream(stream))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read(stub, "Still serving?", [EIFFEL], no_answer_threshold=-1e6).answers


def test_unpadded_parallel_windows_match_a_padded_batch() -> None:
    """Windows run one per call, side by side (the defaults), give the logits a padded batch gives."""
    import dataclasses

    import numpy as np

    from wikimem_reader.backend import Passage
    from wikimem_reader.extractive import ExtractiveReader

    base = ExtractiveConfig.from_env(MODEL_DIR)
    passages = [Passage("a", EIFFEL), Passage("b", LASAGNA + " " + EIFFEL * 3), Passage("c", "Rome is in Italy.")]
    batched = ExtractiveReader(dataclasses.replace(base, sub_batch=8, parallel=1))
    rows = ExtractiveReader(dataclasses.replace(base, sub_batch=1, parallel=2))
    try:
        windows = rows.windows("Where is the Eiffel Tower?", passages)
        assert len({len(w.ids) for w in windows}) > 1  # different lengths: the batch pads
        for (s1, e1), (s2, e2) in zip(batched._infer(windows), rows._infer(windows), strict=True):
            np.testing.assert_allclose(s2, s1, atol=1e-3)
            np.testing.assert_allclose(e2, e1, atol=1e-3)
    finally:
        batched.close()
        rows.close()
