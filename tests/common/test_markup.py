from __future__ import annotations

from wikimem_common.markup import mask_markup


def test_markup_is_blanked_and_offsets_are_kept() -> None:
    text = (
        '<td class="col-value">\n  General Services Administration  <br />\n  1800 F St. NW</td>\n'
        'See [the guide]({% page "/travel/" %}) or [docs](https://example.gov/a_b "T"). {{ site.name }}\n'
        "<!-- hidden\ncomment --> Keep a < b and x > y and [brackets] (plain parens)."
    )
    masked = mask_markup(text)
    assert len(masked) == len(text)
    assert masked.count("\n") == text.count("\n")
    for gone in ("<td", "<br", "</td>", "{%", "https://", "{{", "<!--"):
        assert gone not in masked
    for kept in ("General Services Administration", "1800 F St. NW", "[the guide]", "[docs]", "a < b", "x > y",
                 "[brackets] (plain parens)"):
        assert kept in masked
        assert masked.index(kept) == text.index(kept)
