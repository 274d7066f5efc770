"""The seed cases through the whole system with a generative reader (real models, Qdrant Edge, both backends):
after an edit the answer follows the memory (Rome), not what the model memorised (Paris), with verified
sentences citing the new revision; an unanswerable question abstains; `wikimem ask --reader local-llm` streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e.system import System, start_system

from wikimem.cli import main
from wikimem.client import WikimemClient

from .llm_support import LlamaServer

pytestmark = pytest.mark.llm

COLLECTION = "seed-llm"
QUESTION = "The Eiffel Tower is located in which city?"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, llama_server: LlamaServer) -> Iterator[System]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WIKIMEM_OPENAI_BASE_URL", llama_server.base_url)
        patch.setenv("WIKIMEM_LLM_MAX_TOKENS", "80")
        running = start_system(tmp_path_factory.mktemp("wikimem-llm"))
    try:
        yield running
    finally:
        running.close()


def ask(client: WikimemClient, question: str, reader: str, **options: Any) -> Any:
    return client.ask(question, collection=COLLECTION, reader=reader, no_cache=True, **options)


@pytest.mark.parametrize("reader", ["local-llm", "openai"])
def test_eiffel_tower_follows_the_edit_not_the_model(system: System, reader: str) -> None:
    with WikimemClient(system.address, timeout=300) as client:
        doc = f"landmarks/eiffel-{reader}.md"
        client.put_document(doc, "# Eiffel Tower\n\nThe Eiffel Tower is located in the city of Paris.\n",
                            collection=COLLECTION)
        edit = client.put_document(doc, "# Eiffel Tower\n\nThe Eiffel Tower is located in the city of Rome.\n",
                                   collection=COLLECTION)
        answer = ask(client, QUESTION, reader)
    assert (answer.reader, answer.abstained) == (reader, False), answer.abstain_reason
    assert "rome" in answer.answer.lower() and "paris" not in answer.answer.lower(), answer.generated
    assert answer.sentences and all(s.verified for s in answer.sentences if s.in_answer)
    cited = {(c.doc_id, c.revision) for c in answer.citations}
    assert cited == {(doc, edit.document.revision)}
    assert any("Rome" in c.quote for c in answer.citations)


@pytest.mark.parametrize("reader", ["local-llm", "openai"])
def test_unanswerable_question_abstains(system: System, reader: str) -> None:
    with WikimemClient(system.address, timeout=300) as client:
        client.put_document("cafeteria.md", "# Cafeteria\n\nThe cafeteria serves vegetarian lasagna on Fridays.\n",
                            collection=COLLECTION)
        answer = ask(client, "Who designed the glass pyramid of the Louvre?", reader)
    assert answer.abstained and not answer.citations, answer.generated
    # the model said so, or none of what it wrote is supported
    reason = answer.abstain_reason
    assert reason == "the model found no answer in the passages" or reason.startswith("none of the"), reason


def test_cli_streams_a_local_llm_answer_with_checked_sentences(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    with WikimemClient(system.address) as client:
        client.put_document("landmarks/tower.md", "# Tower\n\nThe Tower of Pisa is located in the city of Pisa.\n",
                            collection=COLLECTION)
    code = main(["ask", "--addr", system.address, "--collection", COLLECTION, "--reader", "local-llm", "--no-cache",
                 "Where is the Tower of Pisa located?"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Pisa" in out.splitlines()[0]  # the streamed answer comes first
    assert "checked against the passages (local-llm, qwen2.5-coder-0.5b):" in out
    assert "  ✓ " in out and "landmarks/tower.md@1" in out
