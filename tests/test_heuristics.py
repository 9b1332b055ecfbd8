"""Gopher quality, Gopher repetition, C4 and FineWeb rules (classifiers/heuristics.py) and
their Beam stages (transforms/heuristics.py): per rule, real text that trips it and real
text that passes; the spaCy tokenizer port against spaCy's own output; each stage on the
DirectRunner."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED

from curate.classifiers import heuristics as H

TEXTBOOKS = SHARED / "real" / "textbooks.parquet"
SAMPLE = REPO / "sample" / "sample.parquet"


def _by_id(path) -> dict[str, dict]:
    if not path.is_file():
        pytest.skip(f"real documents not found at {path} (../shared is present in CI, not in a user's clone)")
    table = pq.read_table(path, columns=["id", "text"])
    return {str(i): {"text": t} for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist())}


@pytest.fixture(scope="module")
def docs(real_docs_path):
    return _by_id(real_docs_path)


@pytest.fixture(scope="module")
def books():
    return _by_id(TEXTBOOKS)


@pytest.fixture(scope="module")
def sample():
    """The sample corpus's blank pages (ground truth: source ``blank``): one empty, one whitespace-only."""
    texts = [r["text"] for r in pq.read_table(SAMPLE, columns=["text", "source"]).to_pylist() if r["source"] == "blank"]
    return {"empty": next(t for t in texts if t == ""), "whitespace": next(t for t in texts if t and not t.strip())}


def reason(family: str, text: str, config=None, lang: str = "en"):
    return H.family_reasons(family, [text], config, [lang])[0]


# a real English document every family keeps (EWT answers)
KEPT_BY_ALL = "en_ewt-dev-answers-20081218053636AA9vV0u_ans-00004"


# ------------------------------------------------------------------ words


def test_words_are_spacys():
    """Expected lists are spaCy 3.8 ``blank('en')`` (datatrove's English word tokenizer) output."""
    tok = H.tokenizer_for("en")
    assert tok.words(
        "Hello, world! Don't do it. U.S. citizens (e.g. me) pay $100.50 for well-known http://x.com/a?b=1 things..."
    ) == [
        "Hello",
        ",",
        "world",
        "!",
        "Do",
        "n't",
        "do",
        "it",
        ".",
        "U.S.",
        "citizens",
        "(",
        "e.g.",
        "me",
        ")",
        "pay",
        "$",
        "100.50",
        "for",
        "well",
        "-",
        "known",
        "http://x.com/a?b=1",
        "things",
        "...",
    ]
    assert tok.words('It\'s 5pm; a/b... "quoted" end.') == [
        "It",
        "'s",
        "5",
        "pm",
        ";",
        "a",
        "/",
        "b",
        "...",
        '"',
        "quoted",
        '"',
        "end",
        ".",
    ]
    # spaCy's special-case matcher joins "h" "." (split off "s/h.") back into its special case "h.",
    # within a whitespace chunk only (": p" stays two words)
    assert tok.words("s/h. and h/y. then :) ok it's H0: p x:p") == [
        "s",
        "/",
        "h.",
        "and",
        "h",
        "/",
        "y.",
        "then",
        ":)",
        "ok",
        "it",
        "'s",
        "H0",
        ":",
        "p",
        "x",
        ":p",
    ]


def test_fast_paths_match_the_rules(docs):
    """The cached fast paths give what spaCy's affix loop gives, on every chunk of 400 real documents."""
    texts = [d["text"] for d in list(docs.values())[:400]]
    for lang in ("en", "fr", "de", "es", "pt", "ru", "ja"):
        tok = H.tokenizer_for(lang)
        for chunk in {c for t in texts for c in t.split()}:
            assert tok._chunk_words(chunk) == tok._slow_words(chunk), (lang, chunk)


def test_word_properties_are_pythons(docs):
    """The Arrow-computed per-word properties equal datatrove's Python definitions."""
    texts = [d["text"] for d in list(docs.values())[::5]]
    H._Words(texts, ["en"] * len(texts))
    tok = H.tokenizer_for("en")
    props = tok.props()
    for i, w in enumerate(tok.tokens):
        assert props["len"][i] == len(w)
        assert props["alpha"][i] == any(c.isalpha() for c in w), w
        assert props["non_symbol"][i] == any(c not in H.PUNCTUATION for c in w), w


def test_cjk_words():
    """Han and Hiragana runs in two-character words, Katakana runs whole, the rest by the rules."""
    assert H.tokenizer_for("ja").words("東京都はとても大きい。テレビ、Tokyo!") == [
        "東京",
        "都",
        "はと",
        "ても",
        "大",
        "きい",
        "。",
        "テレビ",
        "、",
        "Tokyo",
        "!",
    ]
    assert H.tokenizer_for("cmn").words("努克的經濟以漁業為主。") == ["努克", "的經", "濟以", "漁業", "為主", "。"]
    # datatrove 0.10.1 gives "zh" spaCy's multi-language rules: no segmentation
    assert H.tokenizer_for("zh").words("努克的經濟以漁業為主，鱈魚業相當發達。") == [
        "努克的經濟以漁業為主，鱈魚業相當發達",
        "。",
    ]


def test_batch_split_is_str_split():
    """The compiled whitespace split of a batch splits where str.split does: at each of the
    code points str.isspace accepts (and at no other, checked over the whole code space),
    in runs, at the ends, in empty, null and sliced strings."""
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    others = [chr(c) for c in range(0x110000) if not chr(c).isspace() and not 0xD800 <= c < 0xE000]
    texts = [f"a{s}b{s}{s}c{s}" for s in spaces] + [f"x{o}y {o} " for o in others[::7]]
    texts += ["", " ", "  \n\t ", "\u3000abc\u2028\u2028de", None, "ünïcödé wörds . . ."]
    array = pa.array(texts, pa.string())
    tok = H.tokenizer_for("en")
    for arr in (array, array.slice(5, 40), array.slice(len(texts) - 6)):
        ids, offsets = tok.batch_ids(arr)
        for k, text in enumerate(arr.to_pylist()):
            assert [tok.tokens[i] for i in ids[offsets[k] : offsets[k + 1]]] == tok.words(text or ""), repr(text)
    data, offs = H._utf8_buffers(array)
    refs, text_offsets, starts, lengths, _, _ = H._ChunkStore().find(data, offs)  # empty store: every chunk new
    raw = data.tobytes()
    chunks = [raw[a : a + n].decode() for a, n in zip(starts.tolist(), lengths.tolist())]
    got = [[chunks[-1 - r] for r in refs[text_offsets[k] : text_offsets[k + 1]]] for k in range(len(texts))]
    assert got == [(t or "").split() for t in texts]
    assert len(set(chunks)) == len(chunks)  # each distinct chunk numbered once


def test_batches_through_the_chunk_store(docs):
    """Batch after batch (the store growing, its table re-placed, then cleared), every
    document's words are the tokenizer's own, and chunks seen before are not split again."""
    texts = [d["text"] for d in list(docs.values())[:700]]
    tok = H.tokenizer_for("de")
    tok.forget()
    for a in range(0, len(texts), 37):
        if a == 370:
            tok.forget()
        batch = texts[a : a + 37]
        ids, offsets = tok.batch_ids(pa.array(batch, pa.string()))
        for k, text in enumerate(batch):
            assert [tok.tokens[i] for i in ids[offsets[k] : offsets[k + 1]]] == tok.words(text)
    stored = tok._store.n
    assert stored == len(tok._cache) > 1000  # each distinct chunk stored once (as cached once)
    tok.batch_ids(pa.array(texts[400:450], pa.string()))
    assert tok._store.n == stored  # nothing new: found in the store, no Python split


def test_batch_words_in_mixed_languages(docs):
    """A batch of several languages: each document's words are its own tokenizer's, in order."""
    texts = [d["text"] for d in list(docs.values())[:300]]
    langs = ["en", "fr", "ja", None, "ru", "zh"] * 50
    words = H._Words(texts, langs)
    for d in range(len(texts)):
        tok = H.tokenizer_for(langs[d])
        assert [tok.tokens[i] for i in words.doc_ids(d)] == tok.words(texts[d])


def test_words_carried_to_the_next_family(docs):
    """The words one family split a batch into serve the next family on the kept rows (as the
    fused chain hands them on), and give exactly the decisions of tokenizing anew; never
    after the tokenizer's vocabulary was cleared, nor for another array."""
    texts = [d["text"] for d in list(docs.values())[:600]]
    langs = ["en", "fr", "en", "de", None, "ja"] * 100
    array = pa.array(texts, pa.string())
    first = H.gopher_repetition_reasons(array, languages=langs)
    keep = np.array([r is None for r in first])
    kept = array.filter(pa.array(keep))
    kept_langs = [lang for lang, k in zip(langs, keep) if k]
    H.carry_words(array, kept, keep)
    tokenizers = [H.tokenizer_for(lang) for lang in kept_langs]
    assert H._MEMO.find(kept, None, tokenizers) is not None
    carried = H.gopher_quality_reasons(kept, languages=kept_langs)
    fresh = pa.array(kept.to_pylist(), pa.string())  # same strings, other buffers: no memo
    assert H._MEMO.find(fresh, None, tokenizers) is None
    assert carried == H.gopher_quality_reasons(fresh, languages=kept_langs)
    assert H._MEMO.find(fresh, None, tokenizers) is not None  # the fresh batch's own words now
    H.tokenizer_for("en").forget()
    assert H._MEMO.find(fresh, None, tokenizers) is None


def test_arrow_input_and_null():
    texts = pa.array([None, "x."], pa.string())
    assert H.fineweb_reasons(texts) == ["fineweb:empty", "fineweb:short_line_ratio"]


# ------------------------------------------------------------------ Gopher quality


@pytest.mark.parametrize(
    "doc_id, rule",
    [
        ("en_ewt-dev-answers-20080426141111AAgPUwU_ans-00003", "too_few_words"),
        ("en_ewt-dev-answers-20090205181308AAZghOH_ans-00007", "alpha_words"),
        ("en_ewt-dev-newsgroup-groups.google.com_civilization_1201f7692b7769fb_EN-00379", "ellipsis_lines"),
        ("en_ewt-dev-reviews-196219-00781", "stop_words"),
    ],
)
def test_gopher_quality_real_rejects(docs, doc_id, rule):
    assert reason("gopher_quality", docs[doc_id]["text"]) == f"gopher_quality:{rule}"


@pytest.mark.parametrize(
    "doc_id, rule", [("openstax-calculus-m54049", "mean_word_length"), ("openstax-calculus-m54050", "hash_ratio")]
)
def test_gopher_quality_textbook_rejects(books, doc_id, rule):
    assert reason("gopher_quality", books[doc_id]["text"]) == f"gopher_quality:{rule}"


def test_gopher_quality_passes_real_text(docs, books):
    assert reason("gopher_quality", docs[KEPT_BY_ALL]["text"]) is None
    assert reason("gopher_quality", books["openstax-anatomy-physiology-m45981"]["text"]) is None


def test_gopher_quality_built_rules(books):
    text = books["openstax-anatomy-physiology-m45981"]["text"]
    sentences = [" ".join(s.split()) + "." for s in text.split(".") if len(s.split()) > 3]
    assert reason("gopher_quality", "\n".join("\u2022 " + s for s in sentences)) == "gopher_quality:bullet_lines"
    trailing = [" ".join(w + ("..." if i % 5 == 4 else "") for i, w in enumerate(s.split())) for s in sentences]
    assert reason("gopher_quality", "\n".join(trailing)) == "gopher_quality:ellipsis_ratio"
    assert reason("gopher_quality", (text + "\n") * 400) == "gopher_quality:too_many_words"
    # the stop words are matched as written, as datatrove's set intersection does
    cfg = dataclasses.replace(H.GopherQualityConfig(), stop_words=("The", "Be"))
    assert reason("gopher_quality", text, cfg) == "gopher_quality:stop_words"
    assert reason("gopher_quality", text, dataclasses.replace(cfg, min_stop_words=None)) is None


# ------------------------------------------------------------------ Gopher repetition


@pytest.mark.parametrize(
    "doc_id, rule",
    [
        ("en_ewt-dev-answers-20090203211448AAoG2yX_ans-00006", "top_2_gram"),
        ("en_ewt-dev-answers-20090716131314AA4W9uJ_ans-00014", "top_3_gram"),
        ("en_ewt-dev-answers-20090801154222AA09uXV_ans-00021", "top_4_gram"),
        ("en_ewt-dev-answers-20111108081911AAy6QeW_ans-00131", "dup_para_frac"),
        ("en_ewt-dev-answers-20111108084149AAbQBhq_ans-00148", "dup_para_char_frac"),
        ("en_ewt-dev-email-enronsent09_01-00254", "duplicated_5_n_grams"),
        ("en_ewt-dev-email-enronsent27_01-00291", "duplicated_7_n_grams"),
        ("en_ewt-dev-email-enronsent38_01-00309", "duplicated_9_n_grams"),
        ("en_ewt-dev-email-enronsent21_01-00270", "duplicated_10_n_grams"),
        ("openstax-python-programming-m00026", "dup_line_frac"),
    ],
)
def test_gopher_repetition_real_rejects(docs, doc_id, rule):
    assert reason("gopher_repetition", docs[doc_id]["text"]) == f"gopher_repetition:{rule}"


def test_gopher_repetition_passes_and_built_rules(docs, books, sample):
    assert reason("gopher_repetition", docs[KEPT_BY_ALL]["text"]) is None
    text = books["openstax-anatomy-physiology-m45981"]["text"]
    assert reason("gopher_repetition", text) is None
    assert reason("gopher_repetition", sample["empty"]) == "gopher_repetition:empty"
    # one long line repeated once: few duplicate lines by count, many by characters
    lines = text.split("\n")
    longest = max(lines, key=len)
    assert reason("gopher_repetition", "\n".join(lines + [longest])) == "gopher_repetition:dup_line_char_frac"
    # rules switch off
    off = H.GopherRepetitionConfig(None, None, None, None, (), ())
    assert reason("gopher_repetition", docs["en_ewt-dev-email-enronsent09_01-00254"]["text"], off) is None


def test_duplicate_ngram_scan_is_datatroves():
    """find_all_duplicate jumps past a repeated n-gram and does not remember the skipped ones:
    "a b a b a b" with n=2 counts "ab" at 2 and at 4 (2 chars each) = 4 of 11 chars."""
    cfg = H.GopherRepetitionConfig(None, None, None, None, (), ((2, 4 / 11 - 1e-9),))
    assert reason("gopher_repetition", "a b a b a b", cfg) == "gopher_repetition:duplicated_2_n_grams"
    cfg = H.GopherRepetitionConfig(None, None, None, None, (), ((2, 4 / 11),))
    assert reason("gopher_repetition", "a b a b a b", cfg) is None


# ------------------------------------------------------------------ C4


def test_c4_real_rejects_and_edits(docs, books, sample):
    assert reason("c4", docs["en_ewt-dev-answers-20080426141111AAgPUwU_ans-00003"]["text"]) == "c4:too_few_sentences"
    assert reason("c4", books["openstax-calculus-m53477"]["text"]) == "c4:curly_bracket"
    text = docs[KEPT_BY_ALL]["text"]
    reasons, edited, removed = H.c4_filter([text])
    assert reasons == [None] and removed[0] == len(text) - len(edited[0]) > 0
    assert all(line.endswith((".", "?", "!", '"', "'")) and len(line.split()) >= 3 for line in edited[0].split("\n"))


def test_c4_line_rules_on_real_text(books):
    text = books["openstax-anatomy-physiology-m45981"]["text"]
    base_reasons, base, _ = H.c4_filter([text])
    assert base_reasons == [None]
    extra = [
        "Please enable JavaScript to view the comments powered by Disqus.",
        "This site uses cookies to improve your experience.",
        "Short line.",
        "A line without an end",
        "Heart disease kills [1] millions of people each year.",
    ]
    reasons, edited, removed = H.c4_filter([text + "\n" + "\n".join(extra)])
    assert reasons == [None]
    assert edited[0] == base[0] + "\nHeart disease kills  millions of people each year."
    assert H.c4_reasons([text + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."]) == ["c4:lorem_ipsum"]
    assert H.c4_reasons([text + "\nThe set {1, 2} has two elements."]) == ["c4:curly_bracket"]
    # a brace on a removed line (no terminal punctuation) does not drop the page
    assert H.c4_reasons([text + "\nThe set {1, 2} has two elements"]) == [None]
    assert H.c4_reasons([text + "\nLorem ipsum dolor sit amet"], dataclasses.replace(H.C4Config())) == [None]
    off = dataclasses.replace(H.C4Config(), filter_curly_bracket=False)
    assert H.c4_reasons([text + "\nThe set {1, 2} has two elements."], off) == [None]


def test_c4_sentences_are_spacys_sentencizer():
    five = "One is here. Two is here! Three is here? Four, e.g. this one, is here. Five is here."
    assert H.c4_reasons([five]) == [None]
    assert H.c4_reasons([five.replace("Five is here.", "")]) == ["c4:too_few_sentences"]
    # "U.S." and "e.g." are one word each in spaCy: no sentence ends there
    assert H.c4_reasons(["The U.S. is big. It is e.g. large and wide. Yes it is. Done now."]) == [
        "c4:too_few_sentences"
    ]


# ------------------------------------------------------------------ FineWeb


def test_fineweb_real(docs, books, sample):
    assert (
        reason("fineweb", docs["en_ewt-dev-answers-20090203211448AAoG2yX_ans-00006"]["text"])
        == "fineweb:short_line_ratio"
    )
    assert (
        reason("fineweb", docs["en_ewt-dev-answers-20111108081911AAy6QeW_ans-00131"]["text"])
        == "fineweb:char_dup_ratio"
    )
    assert reason("fineweb", docs["en_ewt-dev-email-enronsent23_10-00282"]["text"]) == "fineweb:line_punct_ratio"
    assert reason("fineweb", sample["whitespace"]) == "fineweb:empty"
    assert reason("fineweb", docs[KEPT_BY_ALL]["text"]) is None
    text = books["openstax-anatomy-physiology-m45981"]["text"]
    assert reason("fineweb", text) is None
    # the same words, one or two per line ending in a full stop: too many newlines per word
    words = text.split()
    listed = "\n".join(" ".join(words[i : i + 2]) + "." for i in range(0, len(words), 2))
    cfg = dataclasses.replace(H.FineWebConfig(), short_line_thr=1.0, char_duplicates_ratio=1.0)
    assert reason("fineweb", listed, cfg) == "fineweb:list_ratio"


# ------------------------------------------------------------------ Beam stages


@pytest.mark.parametrize("family", ["gopher_quality", "gopher_repetition", "c4", "fineweb"])
def test_stage_on_direct_runner(real_docs_path, family):
    """Each stage on every 10th real document (8 languages, split by ``lang``) in two batches: every
    document comes out once, rejects carry the pure function's reasons, C4's kept text is
    the edited text and its cut stat counts the characters removed."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    from curate.transforms.heuristics import STAGES
    from curate.transforms.stage import Columns

    table = pq.read_table(real_docs_path, columns=["id", "text", "lang"])
    table = table.take(pa.array(range(0, table.num_rows, 10)))  # every language, every family keeps and drops
    batches = table.to_batches(max_chunksize=120)
    texts, langs, ids = (
        table.column("text").to_pylist(),
        table.column("lang").to_pylist(),
        table.column("id").to_pylist(),
    )
    stage_cls, _ = STAGES[family]
    if family == "c4":
        reasons, edited, removed = H.c4_filter(texts, languages=langs)
    else:
        reasons = H.family_reasons(family, texts, languages=langs)
    expect_kept = {i: (edited[k] if family == "c4" else texts[k]) for k, i in enumerate(ids) if reasons[k] is None}
    expect_rejected = {i: reasons[k] for k, i in enumerate(ids) if reasons[k] is not None}
    assert expect_kept and expect_rejected

    def check_kept(got):
        rows = pa.Table.from_batches(got).to_pylist() if got else []
        assert {r["id"]: r["text"] for r in rows} == expect_kept
        assert len(rows) == len(expect_kept)

    def check_rejected(got):
        rows = pa.Table.from_batches(got).to_pylist()
        assert {r["id"]: r["reason"] for r in rows} == expect_rejected
        assert len(rows) == len(expect_rejected) and {r["stage"] for r in rows} == {stage_cls.name}

    def check_stats(got):
        if family != "c4":
            assert got == []
            return
        docs_cut = sum(d for _, (d, _) in got)
        chars_cut = sum(c for _, (_, c) in got)
        assert {k for k, _ in got} == {("c4", "cut", "")}
        assert (docs_cut, chars_cut) == (
            sum(1 for k, n in enumerate(removed) if reasons[k] is None and n > 0),
            sum(n for k, n in enumerate(removed) if reasons[k] is None),
        )

    with beam.Pipeline(runner="DirectRunner") as p:
        result = p | beam.Create(batches) | stage_cls(Columns(), language_column="lang")
        assert_that(result.kept, check_kept, label="kept")
        assert_that(result.rejected, check_rejected, label="rejected")
        stats = result.extra_stats if result.extra_stats is not None else p | "NoStats" >> beam.Create([])
        assert_that(stats, check_stats, label="stats")
