"""The rule-based filters of Gopher (quality, repetition), C4 and FineWeb, as datatrove 0.10.1
implements them (``GopherQualityFilter``, ``GopherRepetitionFilter``, ``C4QualityFilter``,
``FineWebQualityFilter``), over a batch of texts.  Pure: no Beam.

Each family has a frozen config dataclass (every threshold, datatrove's default and the
paper it comes from) and one function ``<family>_reasons(texts, config, languages)``
returning per document ``None`` (keep) or the first failing rule's reason,
``"<family>:<rule>"``, checked in datatrove's order, so the keep/drop decision and the
rule are datatrove's.  ``texts`` is a list of str or a pyarrow string array (null: "").

Words.  datatrove splits words with the document language's tokenizer: a blank spaCy
tokenizer for en/de/es/fr/pt/ru (and most languages), jieba for zh, SudachiPy for ja.
``WordTokenizer`` re-implements spaCy's tokenizer loop (special cases, prefixes,
suffixes, infixes, URL match) in Python over spaCy's own rules
(``heuristic_rules.py``, exported from spaCy by ``benchmarks/export_spacy_rules.py``),
so words are spaCy's without spaCy here.  Speed comes from caching: a batch is split
on whitespace by a compiled scan of its UTF-8 bytes, and each distinct whitespace-separated
chunk is tokenized once per process (Zipf: most chunks of a new document were seen
before) into ids of a vocabulary whose per-token properties (length, has a letter, is
only punctuation, ...) are numpy arrays, so every count over words is an array
reduction over the whole batch.  The chunks a tokenizer has split are kept in compiled
memory (``_ChunkStore``), so a batch's known chunks are found without Python, and the
words of a batch are handed from one family to the next on its kept rows
(``carry_words``), so a fused chain of families tokenizes a document once.
CJK (ja, and Chinese given as cmn/zho/yue/wuu): instead of a dictionary segmenter
(datatrove: SudachiPy, jieba), runs of Han and of Hiragana are cut into two-character
words and a Katakana run is one word (other characters go through the spaCy rules):
those segmenters average ~1.5-2 characters a word, and one word per character made
the top 2/3/4-gram shares of short Japanese documents far larger than datatrove's
(``benchmarks/results/heuristics.md`` measures both).  Gopher quality's English stop
words and C4's ASCII line endings drop CJK documents whatever the words.  ``zh`` itself
follows datatrove 0.10.1, which gives it spaCy's unsegmented multi-language rules.  A family's rules share
one tokenization of each document.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Sequence
from itertools import chain

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers import heuristic_rules as _rules

# ---------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class GopherQualityConfig:
    """Gopher's quality filter, Rae et al. 2021 (arXiv:2112.11446) section A.1.1 /
    datatrove ``GopherQualityFilter`` defaults.  ``None`` disables a rule."""

    min_doc_words: int | None = 50  # "fewer than 50 ... words" (A.1.1)
    max_doc_words: int | None = 100_000  # "more than 100,000 words" (A.1.1)
    min_avg_word_length: float | None = 3  # "mean word length is outside the range of 3 to 10 characters"
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # "symbol-to-word ratio greater than 0.1" for "#" and ellipsis
    max_bullet_lines_ratio: float | None = 0.9  # "more than 90% of lines starting with a bullet point"
    max_ellipsis_lines_ratio: float | None = 0.3  # "more than 30% ending with an ellipsis"
    min_alpha_words_ratio: float | None = 0.8  # "80% of words ... contain at least one alphabetic character"
    min_stop_words: int | None = 2  # "at least two of the following English words"
    stop_words: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")  # A.1.1's list


@dataclasses.dataclass(frozen=True)
class GopherRepetitionConfig:
    """Gopher's repetition removal, Rae et al. 2021 Table A1 / datatrove
    ``GopherRepetitionFilter`` defaults.  ``None`` (or an empty tuple) disables."""

    dup_line_frac: float | None = 0.3  # duplicate line fraction (Table A1)
    dup_para_frac: float | None = 0.3  # duplicate paragraph fraction
    dup_line_char_frac: float | None = 0.2  # duplicate line character fraction
    dup_para_char_frac: float | None = 0.2  # duplicate paragraph character fraction
    # top n-gram character fraction, n = 2, 3, 4 (Table A1)
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    # duplicate n-gram character fraction, n = 5..10 (Table A1)
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


@dataclasses.dataclass(frozen=True)
class C4Config:
    """C4's cleaning, Raffel et al. 2020 (JMLR 21:140) section 2.2 and TFDS ``c4_utils`` /
    datatrove ``C4QualityFilter`` defaults (``split_paragraph=True``: lines are ``\\n`` lines)."""

    remove_citations: bool = True  # Wikipedia "[1]", "[edit]", "[citation needed]" removed from lines (c4_utils)
    filter_no_terminal_punct: bool = True  # "only retained lines that ended in a terminal punctuation mark"
    min_num_sentences: int = 5  # "discarded any page with fewer than 5 sentences" (-1: off)
    min_words_per_line: int = 3  # "only retained lines that contained at least 3 words" (-1: off)
    max_word_length: int = 1000  # lines with a word over 1000 characters removed (c4_utils; -1: off)
    filter_lorem_ipsum: bool = True  # "removed any page where the phrase 'lorem ipsum' appeared"
    filter_javascript: bool = True  # "removed any line with the word Javascript"
    filter_curly_bracket: bool = True  # "removed any pages that contained a curly bracket"
    filter_policy: bool = True  # cookie / terms-of-use lines removed (c4_utils)


@dataclasses.dataclass(frozen=True)
class FineWebConfig:
    """FineWeb's custom filters, Penedo et al. 2024 (arXiv:2406.17557) section 3.3 /
    datatrove ``FineWebQualityFilter`` defaults."""

    line_punct_thr: float = 0.12  # "fraction of lines ending with punctuation <= 0.12" removed
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67  # "fraction of lines shorter than 30 characters >= 0.67" removed
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01  # "fraction of characters in duplicated lines >= 0.1"; datatrove: 0.01
    new_line_ratio: float = 0.3  # newlines per word (list-like pages), datatrove's default
    stop_chars: str | None = None  # line endings counted as punctuation; None: datatrove's TERMINAL_PUNCTUATION


# ---------------------------------------------------------------- words

PUNCTUATION = frozenset(_rules.PUNCTUATION)  # datatrove's PUNCTUATION_SET: a word of only these is a symbol
_NON_SYMBOL = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(PUNCTUATION)) + "]"  # RE2: a non-punctuation char
TERMINAL_PUNCTUATION = tuple(_rules.TERMINAL_PUNCTUATION)
SENTENCE_PUNCT = frozenset(_rules.SENTENCE_PUNCT)  # spaCy sentencizer's punct_chars
CJK_LANGUAGES = frozenset({"ja", "jpn", "zho", "cmn", "yue", "wuu"})  # not "zh": see tokenizer_for
_SPACY_LANGUAGES = {lang for lang in _rules.RULES if lang != "xx"}
_HAN = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_RUN = re.compile(f"[{_HAN}\u3040-\u30ff]")
_CJK_PIECES = re.compile(f"([{_HAN}]+)|([\u3040-\u309f]+)|([\u30a0-\u30ff]+)|([^{_HAN}\u3040-\u30ff]+)")
_MAX_CACHE = 1 << 20  # chunks (and distinct words) kept per tokenizer; forgotten when full, between batches


def _is_punct(token: str) -> bool:
    """spaCy's ``is_punct``: every character is Unicode punctuation (P*)."""
    return all(unicodedata.category(c).startswith("P") for c in token)


_CLOSERS = frozenset(',;:!?)"')
# English fast paths (other languages' rules differ in places: French keeps "-il", German
# quotes): a letters-only word wrapped in opening and closing marks, each mark its own
# word (a full stop only after a lower-case word that is no abbreviation); words joined
# by hyphens or dashes (spaCy's infix); numbers; possessives.  The tests hold them to
# the rules on every chunk of the real documents
_WRAPPED = re.compile(r"([(\[\u201c\u2018\"]*)([^\W\d_]+)([)\],;:!?\u201d\u2019\".]*)\Z")
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)([,;:)]?)\Z")  # ASCII only: 12 / 3.5 / 200,000 and one closing mark
_POSSESSIVE = re.compile(r"([^\W\d_]+)(['\u2019][sS])\Z")  # English "body's": spaCy's 's suffix
_HYPHENATED = re.compile(r"([^\W\d_]+(?:[-\u2014\u2013][^\W\d_]+)+)([),;:!?\u201d\u2019\"]*)\Z")
_HYPHEN_SPLIT = re.compile("([-\u2014\u2013])")


class _ChunkCache(dict):
    """chunk -> value, computed on a miss."""

    def __init__(self, compute):
        super().__init__()
        self.compute = compute

    def __missing__(self, chunk: str):
        value = self[chunk] = self.compute(chunk)
        return value


class WordTokenizer:
    """spaCy's blank tokenizer for one language, cached by whitespace chunk; words are ids
    into ``self.tokens`` with per-id property arrays (``props``)."""

    def __init__(self, lang: str):
        rules = _rules.RULES[lang]
        self.lang = lang
        self.cjk = False
        self._prefix = re.compile(rules["prefix"]).search if rules["prefix"] else None
        self._suffix = re.compile(rules["suffix"]).search if rules["suffix"] else None
        self._infix = re.compile(rules["infix"]).finditer if rules["infix"] else None
        self._token_match = re.compile(rules["token_match"]).match if rules["token_match"] else None
        self._url_match = re.compile(rules["url_match"]).match if rules["url_match"] else None
        self._specials = {k: tuple(v) for k, v in rules["specials"].items()}
        self.tokens: list[str] = []
        self._ids: dict[str, int] = {}
        self._cache = _ChunkCache(self._chunk_ids)
        self._classes = _ChunkCache(self._chunk_classes)  # chunk -> sentencizer class per word, "0"/"1"/"2"
        self._class_of: list[str] = []
        self._patterns = None  # first word -> special-case patterns, built on first use
        self._props_n = 0
        self._props: dict[str, np.ndarray] = {}
        self.generation = 0
        self._store = _ChunkStore()

    # spaCy's Tokenizer._split_affixes and _attach_tokens (tokenizer.pyx), on one chunk
    def _split(self, string: str, with_specials: bool = True) -> list[str]:
        specials, prefixes, suffixes = (self._specials if with_specials else {}), [], []
        if string in specials:
            return list(specials[string])
        last_size = 0
        while string and len(string) != last_size:
            if self._token_match and self._token_match(string):
                break
            if string in specials:
                break
            last_size = len(string)
            m = self._prefix(string) if self._prefix else None
            pre_len = m.end() - m.start() if m else 0
            if pre_len:
                prefix, minus_pre = string[:pre_len], string[pre_len:]
                if minus_pre and minus_pre in specials:
                    string = minus_pre
                    prefixes.append(prefix)
                    break
            m = self._suffix(string[pre_len:]) if self._suffix else None
            suf_len = m.end() - m.start() if m else 0
            if suf_len:
                suffix, minus_suf = string[-suf_len:], string[:-suf_len]
                if minus_suf and minus_suf in specials:
                    string = minus_suf
                    suffixes.append(suffix)
                    break
            if pre_len and suf_len and (pre_len + suf_len) <= len(string):
                string = string[pre_len:-suf_len]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre_len:
                string = minus_pre
                prefixes.append(prefix)
            elif suf_len:
                string = minus_suf
                suffixes.append(suffix)
        out = prefixes
        if string:
            if string in specials:
                out.extend(specials[string])
            elif (self._token_match and self._token_match(string)) or (self._url_match and self._url_match(string)):
                out.append(string)
            else:
                matches = list(self._infix(string)) if self._infix else []
                if not matches:
                    out.append(string)
                else:
                    start = 0
                    for match in matches:
                        infix_start, infix_end = match.start(), match.end()
                        if infix_start == 0:
                            continue
                        if infix_start != start:
                            out.append(string[start:infix_start])
                        if infix_start != infix_end:
                            out.append(string[infix_start:infix_end])
                        start = infix_end
                    if string[start:]:
                        out.append(string[start:])
        out.extend(reversed(suffixes))
        return out

    def _chunk_words(self, chunk: str) -> list[str]:
        """Fast paths give what ``_split`` gives (tests compare both on every chunk of
        the real documents): a special case; letters only; letters and one closing mark;
        lower-case letters and a full stop (spaCy splits the stop after a lower-case letter)."""
        specials = self._specials
        if chunk in specials:
            return list(specials[chunk])
        if chunk.isalpha() and not (self.cjk and _CJK_RUN.search(chunk)):
            return [chunk]
        head, last = chunk[:-1], chunk[-1:]
        if (
            head.isalpha()
            and not (self.cjk and _CJK_RUN.search(head))
            and (last in _CLOSERS or (last == "." and head[-1].islower() and head.isascii()))
        ):
            return [*specials.get(head, (head,)), last]
        m = _WRAPPED.match(chunk) if self.lang == "en" else None
        if m and not (self.cjk and _CJK_RUN.search(chunk)):
            opening, core, closing = m.groups()
            if (
                core not in specials
                and "".join(closing[:2]) != "''"
                and (
                    "." not in closing
                    or (
                        ".." not in closing
                        and core.isascii()
                        and core[-1].islower()
                        and core + "." not in specials
                        and len(core) > 1
                    )
                )
            ):
                return [*opening, core, *closing]
        if chunk.isascii():
            m = _NUMBER.match(chunk)
            if m:
                number, closer = m.groups()
                return [number, closer] if closer else [number]
        m = _POSSESSIVE.match(chunk) if self.lang == "en" else None
        if m and chunk not in specials and m.group(1) not in specials and not (self.cjk and _CJK_RUN.search(chunk)):
            return list(m.groups())
        m = _HYPHENATED.match(chunk) if self.lang == "en" else None
        if m and not (self.cjk and _CJK_RUN.search(chunk)):
            words, closing = m.groups()
            return [w for w in _HYPHEN_SPLIT.split(words) if w] + list(closing)
        return self._slow_words(chunk)

    def _slow_words(self, chunk: str) -> list[str]:
        if self.cjk and _CJK_RUN.search(chunk):
            out = []
            for han, hira, kata, other in _CJK_PIECES.findall(chunk):
                run = han or hira
                if run:  # Han and Hiragana runs in two-character words, Katakana runs whole
                    out += [run[i : i + 2] for i in range(0, len(run), 2)]
                elif kata:
                    out.append(kata)
                else:
                    out += self._split(other)
            return out
        return self._split(chunk)

    def _chunk_ids(self, chunk: str) -> tuple[int, ...]:
        ids = self._ids
        if chunk.isalpha() and chunk not in self._specials and not (self.cjk and _CJK_RUN.search(chunk)):
            i = ids.get(chunk)  # the common miss: a word of letters only (as _chunk_words)
            return (self._intern(chunk) if i is None else i,)
        out = []
        words = self._chunk_words(chunk)
        if len(words) > 1:
            words = self._match_specials(words)
        for word in words:
            if not word.strip():  # datatrove's strip_strings (a chunk holds no whitespace)
                continue
            i = ids.get(word)
            out.append(self._intern(word) if i is None else i)
        return tuple(out)

    def trim(self) -> None:
        """Forget the chunks and the vocabulary once either holds ``_MAX_CACHE`` entries, so
        memory stays bounded on any number of documents.  Called between batches only (ids
        of a batch stay valid); a chunk's words do not depend on the cache, so neither does
        any output."""
        if len(self._cache) >= _MAX_CACHE or len(self.tokens) >= _MAX_CACHE:
            self.forget()

    def forget(self) -> None:
        self.generation += 1  # ids handed out before this mean nothing now (see _WordsMemo)
        self._store = _ChunkStore()
        self._cache.clear()
        self._classes.clear()
        self.tokens, self._ids, self._props_n, self._props, self._class_of = [], {}, 0, {}, []

    def _chunk_classes(self, chunk: str) -> str:
        ids = self._cache[chunk]
        cls = self._class_of
        for word in self.tokens[len(cls) :]:
            cls.append("2" if word in SENTENCE_PUNCT else "1" if _is_punct(word) else "0")
        return "".join(cls[i] for i in ids)

    def word_ids(self, text: str) -> list[int]:
        return list(chain.from_iterable(map(self._cache.__getitem__, text.split())))

    def batch_ids(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """``word_ids`` of every text of ``texts`` (a string array, null: ""), flat, and the
        per-text offsets into them.  A compiled scan splits the batch's UTF-8 bytes where
        ``str.split()`` does and finds each chunk in the tokenizer's ``_ChunkStore``; Python
        runs only for the chunks no earlier batch had (Zipf: few, once the store is warm)."""
        data, offsets = _utf8_buffers(texts)
        store = self._store
        refs, text_offsets, starts, lengths, hashes, heads = store.find(data, offsets)
        if len(starts):
            raw = data.tobytes()
            cache = self._cache
            per_chunk = [cache[raw[a : a + n].decode()] for a, n in zip(starts.tolist(), lengths.tolist())]
            store.add(data, starts, lengths, hashes, heads, per_chunk)
        return store.expand(refs, text_offsets, len(starts))

    def _special_patterns(self) -> dict:
        """spaCy's special-case matcher: a special case whose string has a prefix, suffix or
        infix (``"h."``, ``":)"``) is also looked for as a run of words after splitting
        ("s/h." splits into "s", "/", "h", "." and "h", "." becomes "h.").  spaCy applies a
        match only where the words' text is the special case's string, i.e. within one
        whitespace chunk, so it is applied per chunk (and cached with it).
        Returns first word -> [(pattern words, special-case words)]."""
        patterns: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        for string, words in self._specials.items():
            if not (
                (self._prefix and self._prefix(string))
                or (self._suffix and self._suffix(string))
                or (self._infix and any(True for _ in self._infix(string)))
                or " " in string
            ):
                continue
            pattern = tuple(w for w in (w.strip() for w in self._split(string, with_specials=False)) if w)
            replacement = tuple(w for w in words if w.strip())
            if len(pattern) > 1 and pattern != replacement:  # (one-word patterns all replace themselves)
                patterns.setdefault(pattern[0], []).append((pattern, replacement))
        return patterns

    def _match_specials(self, words: list[str]) -> list[str]:
        """``words`` (of one chunk) with the special-case patterns found replaced: longest
        first, then the later start, none overlapping (spaCy's ``_filter_special_spans``)."""
        if self._patterns is None:
            self._patterns = self._special_patterns()
        patterns = self._patterns
        found = []
        for i, w in enumerate(words):
            for pattern, replacement in patterns.get(w, ()):
                n = len(pattern)
                if tuple(words[i : i + n]) == pattern:
                    found.append((n, i, replacement))
        if not found:
            return words
        found.sort(key=lambda f: (f[0], f[1]))
        seen: set[int] = set()
        chosen = {}
        for n, i, replacement in reversed(found):
            if i not in seen and i + n - 1 not in seen:
                chosen[i] = (n, replacement)
            seen.update(range(i, i + n))
        out, i = [], 0
        for start in sorted(chosen):
            n, replacement = chosen[start]
            out += words[i:start]
            out += replacement
            i = start + n
        out += words[i:]
        return out

    def _intern(self, word: str) -> int:
        i = self._ids.get(word)
        if i is None:
            i = self._ids[word] = len(self.tokens)
            self.tokens.append(word)
        return i

    def words(self, text: str) -> list[str]:
        return [self.tokens[i] for i in self.word_ids(text)]

    def props(self) -> dict[str, np.ndarray]:
        """Per-id arrays: ``len``, ``alpha`` (has a letter), ``non_symbol`` (a character
        outside datatrove's punctuation)."""
        n = len(self.tokens)
        if n != self._props_n:
            new = pa.array(self.tokens[self._props_n :], pa.string())
            add = {  # Arrow's compiled kernels over the new words (\pL: Python's isalpha categories)
                "len": pc.utf8_length(new).to_numpy(zero_copy_only=False).astype(np.int64),
                "alpha": pc.match_substring_regex(new, r"\pL").to_numpy(zero_copy_only=False),
                "non_symbol": pc.match_substring_regex(new, _NON_SYMBOL).to_numpy(zero_copy_only=False),
            }
            self._props = {k: np.concatenate([self._props[k], v]) if self._props else v for k, v in add.items()}
            self._props_n = n
        return self._props

    def id_of(self, word: str) -> int:
        return self._ids.get(word, -1)


_TOKENIZERS: dict[str, WordTokenizer] = {}


def reset_word_caches() -> None:
    """Forget every cached chunk and vocabulary (compiled rules stay): for benchmarks that
    time a cold start, as datatrove's spaCy starts with an empty cache."""
    for tok in _TOKENIZERS.values():
        tok.forget()
    _MEMO.entry = None


def tokenizer_for(lang: str | None) -> WordTokenizer:
    """The cached tokenizer for an ISO 639-1 code (None: English).  Languages with spaCy
    rules of their own use them; ja/cmn/zho/yue/wuu use English rules plus two-character
    Han/Hiragana words and whole Katakana runs; any other language (zh included, as
    datatrove) spaCy's multi-language ``xx`` rules."""
    lang = (lang or "en").split("_")[0].lower()
    key = lang if lang in _SPACY_LANGUAGES else ("cjk" if lang in CJK_LANGUAGES else "xx")
    if lang == "zh":  # datatrove 0.10.1's tokenizer_assignment.csv gives "zh" spaCy's "xx" (cmn/zho: jieba)
        key = "xx"
    tok = _TOKENIZERS.get(key)
    if tok is None:
        tok = WordTokenizer("en" if key == "cjk" else key)
        tok.cjk = key == "cjk"
        _TOKENIZERS[key] = tok
    return tok


# ---------------------------------------------------------------- batch plumbing


def _as_list(texts) -> list[str]:
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return [t or "" for t in texts.to_pylist()]
    return [t or "" for t in texts]


def _as_array(texts, listed: list[str]) -> pa.Array:
    """``texts`` as one Arrow string array (``listed``: the same as a list, for other inputs)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    return texts if isinstance(texts, pa.Array) else pa.array(listed, pa.string())


def _subset(array: pa.Array, docs: list[int]) -> pa.Array:
    return array if len(docs) == len(array) else array.take(pa.array(docs, pa.int64()))


def _languages(languages, n: int) -> list[str | None]:
    if languages is None or isinstance(languages, str):
        return [languages] * n
    if isinstance(languages, (pa.Array, pa.ChunkedArray)):
        languages = languages.to_pylist()
    return list(languages)


def _utf8_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and each string's (absolute) byte offsets (null: "")."""
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    if pa.types.is_string_view(texts.type):
        texts = texts.cast(pa.large_string())
    _, offsets, data = texts.buffers()[:3]
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offsets, width)[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data, offsets


@numba.njit(cache=True, nogil=True, inline="always")
def _space_width(data, i, end):
    """Bytes of the whitespace character at ``data[i]`` (0: not whitespace): ``str.isspace``'s
    29 code points, in UTF-8 (a test checks every code point against ``str.split``)."""
    b = data[i]
    if 0x20 < b < 0x80:  # the common case: a printable ASCII character
        return 0
    if b < 0x80:
        return 1 if (9 <= b <= 13 or 28 <= b <= 32) else 0
    if b == 0xC2 and i + 1 < end:  # U+0085, U+00A0
        c = data[i + 1]
        return 2 if (c == 0x85 or c == 0xA0) else 0
    if i + 2 < end:
        c, e = data[i + 1], data[i + 2]
        if b == 0xE1:  # U+1680
            return 3 if (c == 0x9A and e == 0x80) else 0
        if b == 0xE2:  # U+2000..200A, U+2028, U+2029, U+202F, U+205F
            if c == 0x80 and (0x80 <= e <= 0x8A or e == 0xA8 or e == 0xA9 or e == 0xAF):
                return 3
            return 3 if (c == 0x81 and e == 0x9F) else 0
        if b == 0xE3:  # U+3000
            return 3 if (c == 0x80 and e == 0x80) else 0
    return 0


# per byte: 0 part of a chunk, 1 ASCII whitespace, 2 the lead byte of a possible whitespace character
_BYTE_KIND = np.zeros(256, np.uint8)
_BYTE_KIND[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_BYTE_KIND[[0xC2, 0xE1, 0xE2, 0xE3]] = 2


def _grown(array: np.ndarray, need: int) -> np.ndarray:
    """``array`` with room for ``need`` rows (doubling), its rows kept."""
    if need <= len(array):
        return array
    size = len(array)
    while size < need:
        size *= 2
    out = np.zeros((size, *array.shape[1:]), array.dtype)
    out[: len(array)] = array
    return out


class _ChunkStore:
    """Every whitespace chunk a tokenizer has split, in compiled memory: its bytes, its
    words' ids and an open-addressing table by content (FNV-1a hash, first 8 bytes, length;
    longer chunks compared byte by byte, so a match is exact), so a batch's known chunks
    are found without Python.  Cleared with the tokenizer's vocabulary (``forget``)."""

    def __init__(self):
        self.n = 0  # chunks stored, numbered 0..n-1 in order of first sight
        self.new_slots = 1 << 16  # slots of the table numbering a batch's new chunks (a hint: any size works)
        self.table = np.zeros((1 << 12, 4), np.int64)  # per slot: hash, first 8 bytes, length, number + 1
        self.keys = np.zeros((1 << 11, 3), np.int64)  # per number: hash, first 8 bytes, length
        self.byte_start = np.zeros(1 << 11, np.int64)
        self.data = np.zeros(1 << 16, np.uint8)
        self.n_bytes = 0
        self.id_offsets = np.zeros((1 << 11) + 1, np.int64)
        self.ids = np.zeros(1 << 14, np.int64)

    def find(self, data: np.ndarray, offsets: np.ndarray):
        """Per chunk of the batch its number (>= 0) or, for a chunk not stored, ``-1 - k`` for
        the k-th distinct new one; per text its chunks' offsets; per new chunk its first
        occurrence's byte start and length in ``data``, hash and first 8 bytes."""
        cap = self.new_slots
        while True:
            out = _find_chunks(data, offsets, _BYTE_KIND, self.table, self.data, self.byte_start, cap)
            if out is not None:
                break
            cap *= 4
        # the batch table for the next batch: room for four times this one's new chunks
        self.new_slots = max(1 << 12, 1 << (8 * len(out[2])).bit_length())
        return out

    def add(self, data, starts, lengths, hashes, heads, per_chunk: list[tuple[int, ...]]) -> None:
        """Store the new chunks (numbered ``n``, ``n + 1``, ... in order) with their words' ids."""
        k = len(starts)
        need = self.n + k
        if 2 * need > len(self.table):  # at most half full: re-place every chunk in a larger table
            cap = len(self.table)
            while 2 * need > cap:
                cap *= 2
            self.table = _rehash(self.keys, self.n, cap)
        self.keys = _grown(self.keys, need)
        self.byte_start = _grown(self.byte_start, need)
        self.id_offsets = _grown(self.id_offsets, need + 1)
        self.data = _grown(self.data, self.n_bytes + int(lengths.sum()))
        counts = np.fromiter(map(len, per_chunk), np.int64, k)
        new_ids = np.fromiter(chain.from_iterable(per_chunk), np.int64, int(counts.sum()))
        n_ids = int(self.id_offsets[self.n])
        self.ids = _grown(self.ids, n_ids + len(new_ids))
        _store_chunks(
            self.table, self.keys, self.byte_start, self.data, self.id_offsets, self.ids,
            data, starts, lengths, hashes, heads, counts, new_ids, self.n, self.n_bytes,
        )  # fmt: skip
        self.n, self.n_bytes = need, self.n_bytes + int(lengths.sum())

    def expand(self, refs, text_offsets, n_new: int):
        """Flat word ids and per-text offsets of a batch ``find`` numbered (its new chunks
        stored since, numbered from ``n - n_new``)."""
        return _expand_refs(refs, text_offsets, self.n - n_new, self.id_offsets, self.ids)


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(table, mask, hs, hd, length, starts, source, data, a):
    """Look a chunk up (hash ``hs``, first 8 bytes ``hd``, ``length``, its bytes at
    ``data[a:]``) in an open-addressing table whose chunk ``v`` has its bytes at
    ``source[starts[v]:]``: (its slot, its number), or (the empty slot it would take, -1)."""
    slot = hs & mask
    while table[slot, 3]:
        if table[slot, 0] == hs and table[slot, 1] == hd and table[slot, 2] == length:
            v = table[slot, 3] - 1
            s = starts[v]
            same = True
            for j in range(8, length):
                if source[s + j] != data[a + j]:
                    same = False
                    break
            if same:
                return slot, v
        slot = (slot + 1) & mask
    return slot, -1


@numba.njit(cache=True, nogil=True)
def _find_chunks(data, offsets, kind, table, stored, byte_start, cap):
    """``_ChunkStore.find``; None when the batch has more than ``cap // 2`` distinct new chunks."""
    n = len(offsets) - 1
    n_bytes = offsets[n] - offsets[0] if n >= 0 else 0
    refs = np.empty(n_bytes // 2 + 1, np.int64)
    text_offsets = np.zeros(n + 1, np.int64)
    smask = len(table) - 1
    mask = cap - 1
    local = np.zeros((cap, 4), np.int64)  # the batch's new chunks: hash, first 8 bytes, length, index + 1
    limit = cap // 2
    starts = np.empty(limit, np.int64)
    lengths = np.empty(limit, np.int64)
    hashes = np.empty(limit, np.int64)
    heads = np.empty(limit, np.int64)
    n_new = 0
    k = 0
    for d in range(n):
        i, end = offsets[d], offsets[d + 1]
        while i < end:
            c = kind[data[i]]
            if c == 1:
                i += 1
                continue
            if c == 2:
                w = _space_width(data, i, end)
                if w:
                    i += w
                    continue
            a = i
            h = np.uint64(0xCBF29CE484222325)
            head = np.uint64(0)
            while i < end:
                b = data[i]
                c = kind[b]
                if c == 1 or (c == 2 and _space_width(data, i, end)):
                    break
                h = (h ^ np.uint64(b)) * np.uint64(0x100000001B3)
                if i - a < 8:
                    head |= np.uint64(b) << np.uint64(8 * (i - a))
                i += 1
            h ^= h >> np.uint64(29)
            hs = np.int64(h)
            hd = np.int64(head)
            length = i - a
            u = _probe(table, smask, hs, hd, length, byte_start, stored, data, a)[1]  # the store
            if u < 0:  # not stored: numbered among the batch's new chunks
                slot, v = _probe(local, mask, hs, hd, length, starts, data, data, a)
                if v < 0:
                    if n_new == limit:
                        return None
                    v = n_new
                    n_new += 1
                    starts[v], lengths[v], hashes[v], heads[v] = a, length, hs, hd
                    local[slot, 0], local[slot, 1], local[slot, 2], local[slot, 3] = hs, hd, length, v + 1
                u = -1 - v
            refs[k] = u
            k += 1
        text_offsets[d + 1] = k
    return refs[:k], text_offsets, starts[:n_new], lengths[:n_new], hashes[:n_new], heads[:n_new]


@numba.njit(cache=True, nogil=True)
def _rehash(keys, n, cap):
    table = np.zeros((cap, 4), np.int64)
    mask = cap - 1
    for v in range(n):
        slot = keys[v, 0] & mask
        while table[slot, 3]:
            slot = (slot + 1) & mask
        table[slot, 0], table[slot, 1], table[slot, 2], table[slot, 3] = keys[v, 0], keys[v, 1], keys[v, 2], v + 1
    return table


@numba.njit(cache=True, nogil=True)
def _store_chunks(
    table, keys, byte_start, stored, id_offsets, ids, data, starts, lengths, hashes, heads, counts, new_ids, n, n_bytes
):
    mask = len(table) - 1
    at, id_at = n_bytes, id_offsets[n]
    for k in range(len(starts)):
        v = n + k
        keys[v, 0], keys[v, 1], keys[v, 2] = hashes[k], heads[k], lengths[k]
        byte_start[v] = at
        for j in range(lengths[k]):
            stored[at + j] = data[starts[k] + j]
        at += lengths[k]
        slot = hashes[k] & mask
        while table[slot, 3]:
            slot = (slot + 1) & mask
        table[slot, 0], table[slot, 1], table[slot, 2], table[slot, 3] = hashes[k], heads[k], lengths[k], v + 1
        id_offsets[v + 1] = id_offsets[v] + counts[k]
    src = 0
    for k in range(len(starts)):
        for j in range(counts[k]):
            ids[id_at] = new_ids[src]
            id_at += 1
            src += 1


@numba.njit(cache=True, nogil=True)
def _expand_refs(refs, text_offsets, base, id_offsets, ids):
    """Flat word ids and per-text offsets from each chunk's number (``-1 - k``: ``base + k``)."""
    n = len(text_offsets) - 1
    offsets = np.zeros(n + 1, np.int64)
    for d in range(n):
        total = offsets[d]
        for c in range(text_offsets[d], text_offsets[d + 1]):
            u = refs[c] if refs[c] >= 0 else base - 1 - refs[c]
            total += id_offsets[u + 1] - id_offsets[u]
        offsets[d + 1] = total
    out = np.empty(offsets[n], np.int64)
    k = 0
    for c in range(len(refs)):
        u = refs[c] if refs[c] >= 0 else base - 1 - refs[c]
        for j in range(id_offsets[u], id_offsets[u + 1]):
            out[k] = ids[j]
            k += 1
    return out, offsets


class _Words:
    """The words of a batch: per document, a tokenizer and its ids (flat, with offsets)."""

    def __init__(self, texts: list[str], languages: list[str | None], array: pa.Array | None = None):
        """``array``: the same texts as an Arrow string array, when the caller has one."""
        self._grouped([tokenizer_for(lang) for lang in languages])
        if array is None:
            array = pa.array(texts, pa.string())
        if len(self.groups) == 1:
            ((tok, _),) = self.groups.values()
            self.ids, self.offsets = tok.batch_ids(array)
        else:  # each tokenizer on its documents, then back in document order
            per_doc: list = [None] * len(texts)
            for tok, docs in self.groups.values():
                ids, offsets = tok.batch_ids(array.take(pa.array(docs, pa.int64())))
                for k, d in enumerate(docs):
                    per_doc[d] = ids[offsets[k] : offsets[k + 1]]
            self.offsets = np.zeros(len(texts) + 1, np.int64)
            np.cumsum([len(x) for x in per_doc], out=self.offsets[1:])
            self.ids = np.concatenate(per_doc) if per_doc else np.zeros(0, np.int64)
        self.counts = np.diff(self.offsets)
        self.generations = {id(tok): tok.generation for tok, _ in self.groups.values()}

    def _grouped(self, tokenizers: list[WordTokenizer], trim: bool = True) -> None:
        self.tok = tokenizers
        # the documents of each distinct tokenizer (its ids are its own)
        self.groups = {}
        for i, tok in enumerate(self.tok):
            self.groups.setdefault(id(tok), (tok, []))[1].append(i)
        if trim:
            for tok, _ in self.groups.values():
                tok.trim()

    def subset(self, rows: np.ndarray) -> _Words:
        """The words of documents ``rows`` (in that order), without tokenizing again."""
        out = object.__new__(_Words)
        counts = self.counts[rows]
        out.offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(counts, out=out.offsets[1:])
        out.counts = counts
        gather = np.repeat(self.offsets[rows] - out.offsets[:-1], counts) + np.arange(out.offsets[-1])
        out.ids = self.ids[gather]
        out._grouped([self.tok[r] for r in rows.tolist()], trim=False)  # ids already issued: no clearing now
        out.generations = self.generations
        return out

    def prop(self, name: str) -> np.ndarray:
        """Per word, the property ``name`` of its token (as in ``WordTokenizer.props``)."""
        return self.lookup(lambda tok: tok.props()[name])

    def lookup(self, table_of) -> np.ndarray:
        """Per word, ``table_of(tokenizer)[id]``: a per-id table of the word's tokenizer."""
        if len(self.groups) == 1:
            ((tok, _),) = self.groups.values()
            return table_of(tok)[self.ids]
        out = None
        for tok, docs in self.groups.values():
            table = table_of(tok)
            if out is None:
                out = np.zeros(len(self.ids), table.dtype)
            for d in docs:
                a, b = self.offsets[d], self.offsets[d + 1]
                out[a:b] = table[self.ids[a:b]]
        return out if out is not None else np.zeros(0)

    def per_doc_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (one per word) per document."""
        csum = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
        return csum[self.offsets[1:]] - csum[self.offsets[:-1]]

    def doc_ids(self, d: int) -> np.ndarray:
        return self.ids[self.offsets[d] : self.offsets[d + 1]]


def _array_key(array: pa.Array) -> tuple:
    """Where an Arrow string array's values live: equal keys, while the first array is held
    (so its memory cannot be reused), mean the same strings."""
    return (
        str(array.type),
        array.offset,
        len(array),
        *(b.address if b is not None else 0 for b in array.buffers()[:3]),
    )


class _WordsMemo(threading.local):
    """The words one family computed for a batch, for the next family of a fused chain.

    Consecutive heuristic stages see one batch after another in the same thread: the kept
    rows of one stage's batch are the next stage's input.  A family leaves its words here
    (``remember``), its stage moves them to its kept batch (``carry_words``), and the next
    family finds them by the kept text array's key instead of tokenizing the same texts
    again.  One entry per thread; it holds the array it is keyed by."""

    def __init__(self):
        self.entry = None  # (array, key, words, rows: per row of the array its document in words, or -1)

    def remember(self, array: pa.Array, words: _Words, rows: np.ndarray) -> None:
        self.entry = (array, _array_key(array), words, rows)

    def find(self, array: pa.Array, docs: list[int] | None, tokenizers: list[WordTokenizer]) -> _Words | None:
        """The remembered words of rows ``docs`` of ``array`` (all when None), if every one is
        there, with the same tokenizers and none of them cleared since."""
        if self.entry is None or self.entry[1] != _array_key(array):
            return None
        _, _, words, rows = self.entry
        rows = rows if docs is None else rows[np.asarray(docs, np.int64)]
        if len(rows) != len(tokenizers) or (rows < 0).any():
            return None
        if any(words.tok[r] is not t for r, t in zip(rows.tolist(), tokenizers)):
            return None
        for tok in {id(t): t for t in tokenizers}.values():
            tok.trim()
            if words.generations.get(id(tok)) != tok.generation:
                return None
        return words if np.array_equal(rows, np.arange(len(words.counts))) else words.subset(rows)


_MEMO = _WordsMemo()


def _words_for(array: pa.Array, texts: list[str], languages: list[str | None], docs: list[int] | None = None):
    """The words of ``texts`` (rows ``docs`` of ``array``; all when None), remembered for the
    next family of the chain (``_WordsMemo``)."""
    langs = languages if docs is None else [languages[d] for d in docs]
    tokenizers = [tokenizer_for(lang) for lang in langs]
    words = _MEMO.find(array, docs, tokenizers)
    if words is None:
        picked = texts if docs is None else [texts[d] for d in docs]
        words = _Words(picked, langs, array if docs is None else _subset(array, docs))
    rows = np.full(len(array), -1, np.int64)
    rows[np.arange(len(array)) if docs is None else np.asarray(docs, np.int64)] = np.arange(len(words.counts))
    _MEMO.remember(array, words, rows)
    return words


def carry_words(before: pa.Array | pa.ChunkedArray, after: pa.Array | pa.ChunkedArray, keep: np.ndarray) -> None:
    """A stage kept rows ``keep`` (a bool mask) of text array ``before`` as ``after``: the words
    a family remembered for ``before`` now serve ``after`` (nothing when none were)."""
    entry = _MEMO.entry
    before, after = (a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in (before, after))
    if entry is not None and entry[1] == _array_key(before):
        _MEMO.remember(after, entry[2], entry[3][np.asarray(keep, np.bool_)])


def _ratio_over(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return count / total


# ---------------------------------------------------------------- Gopher quality

_ELLIPSES = ("...", "\u2026")
_BULLETS = ("\u2022", "-")


def gopher_quality_reasons(
    texts, config: GopherQualityConfig = GopherQualityConfig(), languages=None
) -> list[str | None]:
    """Per document None (keep) or ``gopher_quality:<rule>``, rules in datatrove's order:
    ``too_few_words`` / ``too_many_words`` (words with a non-punctuation character),
    ``mean_word_length`` (of those words), ``hash_ratio`` and ``ellipsis_ratio`` ("#",
    and "..."/"…" occurrences per word, all words), ``bullet_lines``, ``ellipsis_lines``,
    ``alpha_words`` (share of words with a letter), ``stop_words`` (distinct stop words,
    matched case-sensitively as datatrove does)."""
    array, texts = texts, _as_list(texts)
    n = len(texts)
    c = config
    words = _words_for(_as_array(array, texts), texts, _languages(languages, n))
    n_words = words.counts
    non_symbol = words.prop("non_symbol")
    n_ns = words.per_doc_sum(non_symbol)
    ns_len = words.per_doc_sum(np.where(non_symbol, words.prop("len"), 0))
    alpha = words.per_doc_sum(words.prop("alpha"))
    reasons: list[str | None] = [None] * n
    stops = _distinct_stop_words(words, c.stop_words) if c.min_stop_words else None
    for d in range(n):
        text = texts[d]
        if c.min_doc_words and n_ns[d] < c.min_doc_words:
            reasons[d] = "gopher_quality:too_few_words"
            continue
        if c.max_doc_words and n_ns[d] > c.max_doc_words:
            reasons[d] = "gopher_quality:too_many_words"
            continue
        mean = ns_len[d] / n_ns[d] if n_ns[d] else float("nan")  # datatrove: np.mean([]) is nan, passes
        if c.min_avg_word_length and mean < c.min_avg_word_length:
            reasons[d] = "gopher_quality:mean_word_length"
            continue
        if c.max_avg_word_length and mean > c.max_avg_word_length:
            reasons[d] = "gopher_quality:mean_word_length"
            continue
        nw = n_words[d]
        if c.max_symbol_word_ratio and text.count("#") / nw > c.max_symbol_word_ratio:
            reasons[d] = "gopher_quality:hash_ratio"
            continue
        if c.max_symbol_word_ratio and (text.count("...") + text.count("\u2026")) / nw > c.max_symbol_word_ratio:
            reasons[d] = "gopher_quality:ellipsis_ratio"
            continue
        lines = text.splitlines()
        if (
            c.max_bullet_lines_ratio
            and sum(s.lstrip().startswith(_BULLETS) for s in lines) / len(lines) > c.max_bullet_lines_ratio
        ):
            reasons[d] = "gopher_quality:bullet_lines"
            continue
        if (
            c.max_ellipsis_lines_ratio
            and sum(s.rstrip().endswith(_ELLIPSES) for s in lines) / len(lines) > c.max_ellipsis_lines_ratio
        ):
            reasons[d] = "gopher_quality:ellipsis_lines"
            continue
        if c.min_alpha_words_ratio and alpha[d] / nw < c.min_alpha_words_ratio:
            reasons[d] = "gopher_quality:alpha_words"
            continue
        if c.min_stop_words and stops[d] < c.min_stop_words:
            reasons[d] = "gopher_quality:stop_words"
    return reasons


def _distinct_stop_words(words: _Words, stop_words: Sequence[str]) -> np.ndarray:
    """Per document, how many of ``stop_words`` occur as words (case-sensitive, as datatrove)."""
    distinct = sorted(set(stop_words))

    def slots(tok: WordTokenizer) -> np.ndarray:
        table = np.full(len(tok.tokens), -1, np.int64)
        for k, w in enumerate(distinct):
            i = tok.id_of(w)
            if i >= 0:
                table[i] = k
        return table

    slot = words.lookup(slots)
    at = np.flatnonzero(slot >= 0)
    doc = np.searchsorted(words.offsets, at, side="right") - 1
    pairs = np.unique(doc * len(distinct) + slot[at])
    return np.bincount(pairs // max(len(distinct), 1), minlength=len(words.counts))


# ---------------------------------------------------------------- Gopher repetition

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")


def _split_lines(text: str) -> list[str]:
    """``re.split("\\n+", text)`` (datatrove's line split) by ``str.split``: the runs'
    inner empty pieces dropped, the first and last piece kept even when empty."""
    pieces = text.split("\n")
    if len(pieces) <= 2:
        return pieces
    inner = [p for p in pieces[1:-1] if p]
    return [pieces[0], *inner, pieces[-1]]


def _find_duplicates(parts: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (repeated elements, their characters), first copy free."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for p in parts:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        else:
            seen.add(p)
    return dup, dup_chars


_NGRAM_MUL = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def _advance_ngrams(poly, ids, a, m, n):
    """``poly[i]`` from the key of the (n-1)-gram at ``i`` to that of the n-gram, for the
    ``m`` n-grams of ``ids[a:]`` (Horner: key = key * mul + id + 1, so a key extends by one
    word in O(1) and the n-grams of every n cost O(words), not O(words * n))."""
    for i in range(m):
        poly[i] = poly[i] * _NGRAM_MUL + np.uint64(ids[a + i + n - 1] + 1)


@numba.njit(cache=True, nogil=True)
def _ngram_groups(poly, m, table_key, table_group, group):
    """Per n-gram (``poly[:m]``, its polynomial key) a group number, equal for equal keys and
    numbered in order of first occurrence, into ``group[:m]``; returns how many groups.
    Keys are mixed to 64 bits and grouped in an open-addressing table (``table_*``: scratch
    of at least ``2 * m`` slots, a power of two)."""
    cap = 16
    while cap < 2 * m:
        cap <<= 1
    mask = cap - 1
    table_group[:cap] = -1
    g = 0
    for i in range(m):
        h = poly[i]
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
        slot = np.int64(h & np.uint64(mask))
        while table_group[slot] >= 0 and table_key[slot] != h:
            slot = (slot + 1) & mask
        if table_group[slot] < 0:
            table_group[slot] = g
            table_key[slot] = h
            g += 1
        group[i] = table_group[slot]
    return g


@numba.njit(cache=True, nogil=True)
def _repetition_kernel(ids, word_len, offsets, sizes, top_ns, top_fracs, dup_ns, dup_fracs):
    """Per document the index of the first failing n-gram rule (top rules first, then the
    duplicate rules, numbered after them), or -1.

    top n-gram: characters of the most frequent n-gram (words joined by one space) times
    its count, ties to the n-gram occurring first (``Counter.most_common(1)``);
    duplicate n-grams: datatrove's ``find_all_duplicate``, scanning left to right, an
    n-gram seen before adds its characters (words joined without a separator) and the
    scan jumps past it; a skipped n-gram is not remembered.

    Once every n-gram of a document is distinct, so is every longer one (equal (n+1)-grams
    start with equal n-grams): from that n on the top n-gram is the first, once, and no
    n-gram repeats, without grouping."""
    n_docs = len(offsets) - 1
    out = np.full(n_docs, -1, np.int64)
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = 16
    while cap < 2 * longest:
        cap <<= 1
    table_key = np.empty(cap, np.uint64)
    table_group = np.empty(cap, np.int64)
    group = np.empty(max(longest, 1), np.int64)
    poly = np.empty(max(longest, 1), np.uint64)
    count = np.empty(max(longest, 1), np.int64)
    first = np.empty(max(longest, 1), np.int64)
    seen = np.empty(max(longest, 1), np.bool_)
    for d in range(n_docs):
        a, b = offsets[d], offsets[d + 1]
        size = sizes[d]
        csum = np.zeros(b - a + 1, np.int64)
        for i in range(b - a):
            csum[i + 1] = csum[i] + word_len[a + i]
        cur = 0  # poly holds the keys of the cur-grams
        distinct = 1 << 62  # the smallest n found with every n-gram distinct
        for rule in range(len(top_ns) + len(dup_ns)):
            is_top = rule < len(top_ns)
            n = top_ns[rule] if is_top else dup_ns[rule - len(top_ns)]
            if b - a < n:
                continue
            m = b - a - n + 1
            if n >= distinct:
                n_groups = m
            else:
                if n < cur or cur == 0:
                    for i in range(b - a):
                        poly[i] = np.uint64(0)
                    cur = 0
                while cur < n:
                    cur += 1
                    _advance_ngrams(poly, ids, a, b - a - cur + 1, cur)
                n_groups = _ngram_groups(poly, m, table_key, table_group, group)
                if n_groups == m:
                    distinct = n
            if is_top:
                if n_groups == m:
                    best, pos = 1, 0
                else:
                    count[:n_groups] = 0
                    first[:n_groups] = -1
                    for i in range(m):
                        count[group[i]] += 1
                        if first[group[i]] < 0:
                            first[group[i]] = i
                    best, pos = 0, 0
                    for g in range(n_groups):  # groups are in order of first occurrence: the first max wins
                        if count[g] > best:
                            best, pos = count[g], first[g]
                chars = (csum[pos + n] - csum[pos] + n - 1) * best
                if chars / size > top_fracs[rule]:
                    out[d] = rule
                    break
            else:
                if n_groups == m:
                    continue
                seen[:n_groups] = False
                total, i = 0, 0
                while i < m:
                    if seen[group[i]]:
                        total += csum[i + n] - csum[i]
                        i += n
                    else:
                        seen[group[i]] = True
                        i += 1
                if total / size > dup_fracs[rule - len(top_ns)]:
                    out[d] = rule
                    break
    return out


def gopher_repetition_reasons(
    texts, config: GopherRepetitionConfig = GopherRepetitionConfig(), languages=None
) -> list[str | None]:
    """Per document None (keep) or ``gopher_repetition:<rule>``, in datatrove's order:
    ``empty``, ``dup_para_frac``, ``dup_para_char_frac`` (paragraphs: split on 2+ newlines),
    ``dup_line_frac``, ``dup_line_char_frac`` (lines: split on newlines), ``top_{n}_gram``
    (characters of the most frequent word n-gram, words joined by spaces, times its count,
    over the text's characters), ``duplicated_{n}_n_grams`` (characters of repeated n-grams,
    datatrove's greedy scan).  N-grams are compared by a 64-bit key of their word ids
    rather than by their joined string (datatrove joins the 5..10-grams without a
    separator, so "ab c" equals "a bc" there: a collision this does not reproduce)."""
    array, texts = texts, _as_list(texts)
    n = len(texts)
    c = config
    reasons: list[str | None] = [None] * n
    need_words = []
    for d, text in enumerate(texts):
        if not text:
            reasons[d] = "gopher_repetition:empty"
            continue
        size = len(text)
        stripped = text.strip()
        paragraphs = _PARAGRAPHS.split(stripped) if "\n\n" in stripped else [stripped]
        dup, dup_chars = _find_duplicates(paragraphs)
        if c.dup_para_frac and dup / len(paragraphs) > c.dup_para_frac:
            reasons[d] = "gopher_repetition:dup_para_frac"
            continue
        if c.dup_para_char_frac and dup_chars / size > c.dup_para_char_frac:
            reasons[d] = "gopher_repetition:dup_para_char_frac"
            continue
        lines = _split_lines(text)
        dup, dup_chars = _find_duplicates(lines)
        if c.dup_line_frac and dup / len(lines) > c.dup_line_frac:
            reasons[d] = "gopher_repetition:dup_line_frac"
            continue
        if c.dup_line_char_frac and dup_chars / size > c.dup_line_char_frac:
            reasons[d] = "gopher_repetition:dup_line_char_frac"
            continue
        need_words.append(d)
    if not need_words or not (c.top_n_grams or c.dup_n_grams):
        return reasons
    langs = _languages(languages, n)
    words = _words_for(_as_array(array, texts), texts, langs, need_words)
    top, dup = list(c.top_n_grams), list(c.dup_n_grams)
    sizes = np.fromiter((len(texts[d]) for d in need_words), np.int64, len(need_words))
    failed = _repetition_kernel(
        words.ids,
        words.prop("len").astype(np.int64),
        words.offsets,
        sizes,
        np.array([k for k, _ in top], np.int64),
        np.array([f for _, f in top], np.float64),
        np.array([k for k, _ in dup], np.int64),
        np.array([f for _, f in dup], np.float64),
    )
    names = [f"gopher_repetition:top_{k}_gram" for k, _ in top] + [
        f"gopher_repetition:duplicated_{k}_n_grams" for k, _ in dup
    ]
    for d, r in zip(need_words, failed.tolist()):
        if r >= 0:
            reasons[d] = names[r]
    return reasons


# ---------------------------------------------------------------- C4

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_END_PUNCT = (".", "?", "!", '"', "'")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


_BOUNDARY = re.compile("2[12]*0")


def _sentences(tok: WordTokenizer, line: str) -> int:
    """spaCy's sentencizer on ``line``: a sentence starts at the first token that is neither
    punctuation nor a sentence-final mark after a sentence-final mark.  Over the words'
    classes (0 other, 1 punctuation, 2 sentence-final, cached per chunk) a boundary is
    ``2[12]*0``."""
    classes = "".join(map(tok._classes.__getitem__, line.split()))
    return 1 + len(_BOUNDARY.findall(classes)) if classes else 0


def c4_filter(texts, config: C4Config = C4Config(), languages=None):
    """C4's rules over a batch: ``(reasons, edited, removed)``, per document: None or
    ``c4:<rule>``; the edited text of a kept document (None for a dropped one);
    the characters removed from a kept document (0 for a dropped one).

    Rules that REMOVE LINES (each ``\\n`` line is stripped first, and removed when): a word
    over ``max_word_length`` characters; not ending in . ? ! " ' or ending in "...";
    fewer than ``min_words_per_line`` whitespace words; "javascript" (any case); a
    cookie/terms-of-use phrase.  Wikipedia citation marks are cut out of every line.
    Rules that DROP THE DOCUMENT: ``c4:lorem_ipsum`` and ``c4:curly_bracket``, looked for
    only in lines that passed the line rules before them (as datatrove: a "{" on a line
    without terminal punctuation removes that line, not the page);
    ``c4:too_few_sentences``: fewer than ``min_num_sentences`` sentences (spaCy's
    sentencizer on the document language's words) in the kept lines.  The kept text is
    the kept lines joined by ``\\n``."""
    texts = _as_list(texts)
    n = len(texts)
    c = config
    langs = _languages(languages, n)
    reasons: list[str | None] = [None] * n
    edited: list[str | None] = [None] * n
    removed = [0] * n
    for tok in {id(t): t for t in map(tokenizer_for, set(langs))}.values():
        tok.trim()
    for d, text in enumerate(texts):
        tok = tokenizer_for(langs[d])
        kept, sentences, reason = [], 0, None
        for line in text.splitlines():
            line = line.strip()
            words = line.split()
            if (
                c.max_word_length != -1
                and len(line) > c.max_word_length
                and max(map(len, words), default=0) > c.max_word_length
            ):
                continue
            if c.remove_citations and "[" in line:
                line = _CITATION.sub("", line)
            if c.filter_no_terminal_punct and (not line.endswith(_END_PUNCT) or line.endswith("...")):
                continue
            if len(words) < c.min_words_per_line:
                continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                reason = "c4:lorem_ipsum"
                break
            if c.filter_javascript and "javascript" in lower:
                continue
            if c.filter_curly_bracket and "{" in line:
                reason = "c4:curly_bracket"
                break
            if c.filter_policy and any(p in lower for p in _POLICY):
                continue
            if c.min_num_sentences != -1:
                sentences += _sentences(tok, line)
            kept.append(line)
        if reason is None and sentences < c.min_num_sentences:
            reason = "c4:too_few_sentences"
        if reason is not None:
            reasons[d] = reason
            continue
        out = "\n".join(kept).strip()
        edited[d], removed[d] = out, len(text) - len(out)
    return reasons, edited, removed


def c4_reasons(texts, config: C4Config = C4Config(), languages=None) -> list[str | None]:
    return c4_filter(texts, config, languages)[0]


# ---------------------------------------------------------------- FineWeb


def fineweb_reasons(texts, config: FineWebConfig = FineWebConfig(), languages=None) -> list[str | None]:
    """Per document None (keep) or ``fineweb:<rule>``, in datatrove's order, over the
    non-blank ``\\n`` lines: ``empty``; ``line_punct_ratio`` (share of lines ending in
    terminal punctuation below ``line_punct_thr``); ``short_line_ratio`` (share of lines
    of at most ``short_line_length`` characters above ``short_line_thr``);
    ``char_dup_ratio`` (characters of repeated lines over the text's non-newline
    characters); ``list_ratio`` (newlines per word above ``new_line_ratio``)."""
    array, texts = texts, _as_list(texts)
    n = len(texts)
    c = config
    stop = tuple(c.stop_chars) if c.stop_chars is not None else TERMINAL_PUNCTUATION
    reasons: list[str | None] = [None] * n
    need_words = []
    for d, text in enumerate(texts):
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            reasons[d] = "fineweb:empty"
            continue
        ratio = sum(1 for line in lines if line.endswith(stop)) / len(lines)
        if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
            reasons[d] = "fineweb:line_punct_ratio"
            continue
        if sum(1 for line in lines if len(line) <= c.short_line_length) / len(lines) > c.short_line_thr:
            reasons[d] = "fineweb:short_line_ratio"
            continue
        if _find_duplicates(lines)[1] / (len(text) - text.count("\n")) > c.char_duplicates_ratio:
            reasons[d] = "fineweb:char_dup_ratio"
            continue
        need_words.append(d)
    if need_words:
        langs = _languages(languages, n)
        sub = [texts[d] for d in need_words]
        counts = _words_for(_as_array(array, texts), texts, langs, need_words).counts
        for d, text, nw in zip(need_words, sub, counts):
            if nw == 0 or text.count("\n") / nw > c.new_line_ratio:
                reasons[d] = "fineweb:list_ratio"
    return reasons


FAMILIES = {
    "gopher_quality": gopher_quality_reasons,
    "gopher_repetition": gopher_repetition_reasons,
    "c4": c4_reasons,
    "fineweb": fineweb_reasons,
}


def family_reasons(family: str, texts, config=None, languages=None) -> list[str | None]:
    fn = FAMILIES[family]
    return fn(texts, languages=languages) if config is None else fn(texts, config, languages)


__all__ = [
    "GopherQualityConfig",
    "GopherRepetitionConfig",
    "C4Config",
    "FineWebConfig",
    "WordTokenizer",
    "tokenizer_for",
    "gopher_quality_reasons",
    "gopher_repetition_reasons",
    "c4_filter",
    "c4_reasons",
    "fineweb_reasons",
    "FAMILIES",
    "family_reasons",
    "carry_words",
    "Sequence",
]
