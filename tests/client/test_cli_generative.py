"""How `wikimem ask` shows a generated answer: the verified text, then each sentence checked (✓ with its citations,
✗ with why), then the citations."""

from __future__ import annotations

import io

from wikimem.cli import build_parser, print_answer
from wikimem.models import Answer, AnswerSentence, Citation, answer_to_dict

QUOTE = "The Eiffel Tower is located in the city of Rome."


def generated_answer() -> Answer:
    return Answer(
        answer="The Eiffel Tower is in Rome.",
        abstained=False,
        abstain_reason="",
        citations=[Citation("landmarks/eiffel.md", 2, "Eiffel Tower", "", 16, 64, QUOTE, 16, 64, "c#0", 0.9)],
        cached=False,
        reranked=True,
        warnings=[],
        timings_ms={},
        sentences=[
            AnswerSentence("The Eiffel Tower is in Rome.", True, [0], 0.91, True),
            AnswerSentence("It was built in 1889.", False, [], 0.1, False, "no passage mentions '1889'"),
        ],
        reader="local-llm",
        reader_model="qwen2.5-coder-0.5b",
        generated="The Eiffel Tower is in Rome. It was built in 1889.",
    )


def test_generated_answer_lists_checked_sentences_and_citations() -> None:
    out = io.StringIO()
    print_answer(generated_answer(), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "The Eiffel Tower is in Rome."
    assert "checked against the passages (local-llm, qwen2.5-coder-0.5b):" in lines
    assert "  ✓ The Eiffel Tower is in Rome. [1]" in lines
    assert "  ✗ It was built in 1889. (dropped: no passage mentions '1889')" in lines
    assert "[1] Eiffel Tower — landmarks/eiffel.md@2 chars 16–64" in lines


def test_json_carries_sentences_and_reader() -> None:
    data = answer_to_dict(generated_answer(), "Where?")
    assert data["reader"] == "local-llm" and data["reader_model"] == "qwen2.5-coder-0.5b"
    assert [s["verified"] for s in data["sentences"]] == [True, False]
    assert data["generated"].endswith("1889.")


def test_ask_options_for_generative_readers() -> None:
    argv = ["ask", "--reader", "local-llm", "--max-tokens", "64", "--unsupported", "flag", "q"]
    args = build_parser().parse_args(argv)
    assert (args.reader, args.max_tokens, args.unsupported) == ("local-llm", 64, "flag")
