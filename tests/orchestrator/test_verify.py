"""Citation assignment and verification of generated answers (verify.py, grounding.py) — no LLM needed.

Fake "generated" texts stand in for a model: supported paraphrases must verify with exact spans, while swapped
entities, changed numbers and memorised extras must not.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_common.errors import Unavailable
from wikimem_contract.v1 import common_pb2, rag_pb2, reader_pb2
from wikimem_orchestrator.grounding import ground_generated
from wikimem_orchestrator.pipeline import ABSTAIN_ANSWER
from wikimem_orchestrator.verify import (
    VerifyConfig,
    check_answer,
    content_terms,
    key_terms,
    split_sentences,
    strip_markers,
)

Scored = common_pb2.ScoredChunk
ROME = "# Eiffel Tower\n\nThe Eiffel Tower is located in the city of Rome. It is 330 metres tall.\n"
LEAVE = (
    "Submit leave requests at least three business days in advance. Your supervisor approves them in HRLinks.\n\n"
    "- Sick leave does not need advance notice.\n- Annual leave accrues every pay period."
)
Q = "The Eiffel Tower is located in which city?"


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_sentence_split_keeps_abbreviations_numbers_and_list_items() -> None:
    assert sentences("See e.g. the D.C. office. It opens at 9 a.m. daily! Version 1.5 is out? Yes") == [
        "See e.g. the D.C. office.", "It opens at 9 a.m. daily!", "Version 1.5 is out?", "Yes"
    ]
    assert sentences(LEAVE)[-2:] == [
        "- Sick leave does not need advance notice.", "- Annual leave accrues every pay period."
    ]
    assert sentences("Hard-wrapped\nline stays one sentence.") == ["Hard-wrapped\nline stays one sentence."]
    assert sentences("  \n ") == []


def test_markers_and_key_terms() -> None:
    assert strip_markers("It is in Rome [1]. Really [2, 3] (Passage 4).") == "It is in Rome. Really."
    assert key_terms("The Eiffel Tower was built in 1889 by Gustave Eiffel.") == ["Eiffel", "Tower", "1889", "Gustave"]
    assert key_terms("Employees get 25 days.") == ["25"]  # the capital of the first word is no name
    assert key_terms("TTS recommends KeePassXC.") == ["TTS", "KeePassXC"]
    assert content_terms("The towers are located") == {"tower", "locat"}


def test_supported_paraphrase_is_verified_with_an_exact_span() -> None:
    [checked] = check_answer(Q, "The Eiffel Tower is in Rome.", [ROME])
    assert checked.verified and checked.note == ""
    span = checked.supports[0].span
    assert ROME[span.start : span.end] == span.text == "The Eiffel Tower is located in the city of Rome."
    assert checked.support >= VerifyConfig().threshold


def test_swapped_entity_and_memorised_extras_are_not_verified() -> None:
    paris, built = check_answer(Q, "The Eiffel Tower is located in Paris. It was completed in 1889.", [ROME])
    assert not paris.verified and "Paris" in paris.note
    assert not built.verified and "1889" in built.note
    [height] = check_answer("How tall is the Eiffel Tower?", "It is 300 metres tall.", [ROME])
    assert not height.verified and "'300'" in height.note
    [unrelated] = check_answer(Q, "Bananas are yellow.", [ROME])
    assert not unrelated.verified and unrelated.supports == ()


def test_a_sentence_joining_two_sentences_of_one_passage_cites_both() -> None:
    shop = "The Eiffel Tower in Rome has a souvenir shop. The shop closes at 18:00 on weekdays."
    [checked] = check_answer("When does the shop close?", "The Eiffel Tower's souvenir shop closes at 18:00.", [shop])
    assert checked.verified
    assert {s.span.text for s in checked.supports} == {
        "The shop closes at 18:00 on weekdays.", "The Eiffel Tower in Rome has a souvenir shop."
    }


def test_facts_from_different_passages_are_not_joined() -> None:
    """"The tower is in Paris" must not pass on "Paris is ..." of one page plus "The Eiffel Tower ..." of another."""
    paris = "Paris is the capital of France."
    [checked] = check_answer(
        "Which landmarks are there?", "The Eiffel Tower stands in Paris, the capital of France.", [ROME, paris]
    )
    assert not checked.verified and "'Eiffel'" in checked.note
    # number words count as numbers: "six steps" is not "four steps", and "one hour" is "1 hour"
    steps = "You'll receive an email containing four steps. Notify GSA IT within 1 hour."
    answer = "The email contains six steps. Notify IT within one hour."
    six, hour = check_answer("What is in the email?", answer, [steps])
    assert not six.verified and "'six'" in six.note
    assert hour.verified


def bag_embed(texts: list[str]) -> npt.NDArray[np.float32]:
    """A deterministic stand-in for the embedder: hashed bag of content terms, L2-normalised."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for term in content_terms(text):
            out[i, int(hashlib.md5(term.encode()).hexdigest(), 16) % 64] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def test_embedding_similarity_enters_the_support() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        calls.append(texts)
        return bag_embed(texts)

    [checked] = check_answer(Q, "The Eiffel Tower is located in Rome.", [ROME], embed)
    assert checked.verified and checked.supports[0].semantic > 0.5
    # one call: the sentence, then only candidate spans (those sharing words), never every passage sentence
    assert len(calls) == 1 and calls[0][0] == "The Eiffel Tower is located in Rome."
    assert "It is 330 metres tall." not in calls[0]  # shares no word with the sentence: never embedded
    strict = VerifyConfig(threshold=0.99, lexical_weight=0.0)
    [rejected] = check_answer(Q, "The tower stands in Rome.", [ROME], bag_embed, strict)
    assert not rejected.verified and rejected.note.startswith("support ")


def chunk(text: str, doc_id: str = "landmarks/eiffel.md", revision: int = 3, offset: int = 100) -> Scored:
    return common_pb2.ScoredChunk(
        chunk=common_pb2.Chunk(
            chunk_id=f"{doc_id}@{revision}#0", doc_id=doc_id, revision=revision, title="Eiffel Tower",
            start=offset, end=offset + len(text), text=text,
        ),
        score=1.0,
    )


def ground(text: str, policy: str = "drop", embed: object = None) -> tuple[rag_pb2.AskResponse, list[str]]:
    response = rag_pb2.AskResponse()
    warnings: list[str] = []
    ground_generated(
        response, Q, reader_pb2.ReadAnswer(text=text, generated=True), [chunk(ROME)], policy, ABSTAIN_ANSWER,
        embed, VerifyConfig(), warnings,  # type: ignore[arg-type]
    )
    return response, warnings


def test_grounding_drops_unsupported_sentences_and_cites_document_spans() -> None:
    document = "x" * 100 + ROME  # the chunk starts at offset 100 of its document
    response, warnings = ground("The Eiffel Tower is in Rome [1]. It was built in 1889 by Gustave Eiffel.")
    assert not response.abstained and warnings == []
    assert response.answer == "The Eiffel Tower is in Rome."
    assert response.generated.startswith("The Eiffel Tower is in Rome [1]. It was built")
    [cite] = response.citations
    assert (cite.doc_id, cite.revision, cite.chunk_id) == ("landmarks/eiffel.md", 3, "landmarks/eiffel.md@3#0")
    assert document[cite.start : cite.end] == cite.quote
    assert document[cite.answer_start : cite.answer_end] == "The Eiffel Tower is located in the city of Rome."
    first, second = response.sentences
    assert (first.verified, list(first.citations), first.in_answer) == (True, [0], True)
    assert (second.verified, list(second.citations), second.in_answer) == (False, [], False)
    assert "1889" in second.note
    assert response.generated[first.start : first.end] == "The Eiffel Tower is in Rome [1]."
    assert 0 < response.score <= 1


def test_flag_policy_keeps_unverified_sentences() -> None:
    response, _ = ground("The Eiffel Tower is in Rome. It was built in 1889.", policy="flag")
    assert response.answer == "The Eiffel Tower is in Rome. It was built in 1889."
    assert [s.verified for s in response.sentences] == [True, False]
    assert all(s.in_answer for s in response.sentences)


def test_nothing_supported_abstains() -> None:
    response, _ = ground("The Eiffel Tower is located in Paris. It opened in 1889.")
    assert response.abstained and response.answer == ABSTAIN_ANSWER
    assert "none of the 2 generated sentences is supported" in response.abstain_reason
    assert list(response.citations) == [] and not any(s.in_answer for s in response.sentences)
    assert response.generated.startswith("The Eiffel Tower is located in Paris.")


def test_embedder_failure_falls_back_to_word_overlap() -> None:
    def down(texts: list[str]) -> npt.NDArray[np.float32]:
        raise Unavailable("embedder service at 127.0.0.1:1 is unavailable")

    response, warnings = ground("The Eiffel Tower is in Rome.", embed=down)
    assert not response.abstained and response.sentences[0].verified
    assert len(warnings) == 1 and "word overlap only" in warnings[0] and "127.0.0.1:1" in warnings[0]


# --- through the orchestrator (fake peers; the fake reader "generates" a fixed text) -------------------------


def test_ask_verifies_a_generated_answer(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    peers.reader.generate = "The VPN profile is called VPN-42. It also needs a hardware token from IT-7."
    reply = orch.ask(VPN_Q, max_tokens=64)
    assert peers.calls.last["read"].options.max_tokens == 64
    assert (reply.reader, reply.reader_model) == ("fake-llm", "fake-model")
    assert not reply.abstained and reply.answer == "The VPN profile is called VPN-42."
    [cite] = reply.citations
    assert HANDBOOK[cite.start : cite.end] == cite.quote
    assert "VPN-42" in HANDBOOK[cite.answer_start : cite.answer_end]
    assert [s.verified for s in reply.sentences] == [True, False]
    assert "IT-7" in reply.sentences[1].note
    assert reply.timings_ms["verify"] > 0

    flagged = orch.ask(VPN_Q, unsupported="flag")
    assert flagged.answer == peers.reader.generate and not flagged.cached  # the policy is part of the cache key


def test_ask_stream_sends_the_model_text_then_the_checked_answer(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    peers.reader.generate = "It is in Paris."
    events = list(orch.stub.AskStream(rag_pb2.AskStreamRequest(question=VPN_Q), timeout=30))
    deltas = [e.delta for e in events if e.WhichOneof("event") == "delta"]
    assert "".join(deltas) == "It is in Paris."
    final = events[-1].result
    assert final.abstained and final.answer == ABSTAIN_ANSWER and final.generated == "It is in Paris."


def test_extractive_answer_is_one_verified_sentence(orch: Orchestrator) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    reply = orch.ask(VPN_Q)
    assert reply.reader == "fake" and reply.generated == ""
    [sentence] = reply.sentences
    assert sentence.verified and sentence.text == "VPN-42" and list(sentence.citations) == [0]


def test_unknown_unsupported_policy_is_invalid(orch: Orchestrator) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        orch.ask(VPN_Q, unsupported="hide")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.unsupported is 'hide'; use 'drop' or 'flag'" in (err.value.details() or "")


def test_real_false_negatives_of_the_handbook_run_now_verify() -> None:
    """Two correct 1.5B answers the first version dropped: an address spelled out ("Street" for "St.", "D.C." for
    "DC") and a sentence joining a heading with the fact under it."""
    office = "GSA headquarters\n\n1800 F St. NW, Washington, DC 20405"
    [address] = check_answer(
        "What is the street address of the GSA headquarters building in Washington, D.C.?",
        "The GSA headquarters building in Washington, D.C., is located at 1800 F Street NW.",
        [office],
    )
    assert address.verified, address.note
    incidents = (
        "## You must report IT security incidents or suspicious activity\n\nAn incident is a violation of policy.\n\n"
        "It is critical that you notify GSA IT within 1 hour of suspected incident."
    )
    [joined] = check_answer(
        "How soon must you notify GSA IT of a suspected security incident?",
        "You must report IT security incidents or suspicious activity within 1 hour of suspected incident.",
        [incidents],
    )
    assert joined.verified and len(joined.supports) == 2, joined.note
    [wrong] = check_answer("What is the address?", "It is at 1800 G Street NW.", [office])
    assert not wrong.verified and "'G'" in wrong.note
