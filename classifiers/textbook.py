"""The reference recipe's textbook heuristics, as pure functions.

A document passes when it has at least ``min_words`` words, at least
``min_markers`` educational markers (explanation or example phrases), and
every fenced Python code block in it parses (``ast.parse``: the code is
parsed, never compiled to run, never executed).
"""

from __future__ import annotations

import ast
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers.quality import EXAMPLE_MARKERS, EXPLANATION_MARKERS

_MARKERS_RE = (
    r"(?i)\b(?:"
    + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(set(EXPLANATION_MARKERS + EXAMPLE_MARKERS)))
    + r")"
)
_FENCED = re.compile(r"^\s*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^\s*```", re.S | re.M)
_PYTHON_TAGS = {"python", "py", "python3", "pycon", ""}


def python_blocks_valid(text: str) -> bool:
    """True when every fenced block tagged python (or untagged) parses as Python."""
    for match in _FENCED.finditer(text):
        tag, code = match.group(1).lower(), match.group(2)
        if tag not in _PYTHON_TAGS:
            continue
        if tag == "pycon" or code.lstrip().startswith(">>>"):
            code = "\n".join(line[4:] for line in code.splitlines() if line.startswith((">>> ", "... ")))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return False
    return True


def textbook_reasons(texts: pa.Array, min_words: int = 100, min_markers: int = 2, check_code: bool = True) -> list[str]:
    """Per document: "" when it passes, else the first failing reason."""
    texts = pc.fill_null(texts, "")
    words = pc.list_value_length(pc.utf8_split_whitespace(texts)).to_numpy(zero_copy_only=False)
    markers = pc.count_substring_regex(texts, pattern=_MARKERS_RE).to_numpy(zero_copy_only=False)
    reasons = np.where(
        words < min_words, "too_few_words", np.where(markers < min_markers, "too_few_educational_markers", "")
    ).astype(object)
    if check_code:
        has_fence = pc.match_substring(texts, "```").to_numpy(zero_copy_only=False)
        py = texts.to_pylist()
        for i in np.flatnonzero((reasons == "") & has_fence):
            if not python_blocks_valid(py[i]):
                reasons[i] = "invalid_code_block"
    return [str(r) for r in reasons]
