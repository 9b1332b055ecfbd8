"""Language ID: the real lid.176 model, batched, on the DirectRunner."""

from __future__ import annotations

import html
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import only_stages, read_dir, read_rejects, run_pipeline, write_parquet

from curate.classifiers.langid import LanguageIdentifier, ModelFileError, check_fasttext_file
from curate.transforms.language import decide_languages


def test_degenerate_documents_get_defined_outcomes():
    model = LanguageIdentifier()
    labels, scores = model.predict(
        [
            "",
            "   ",
            "12 345 6789",
            "!!! ??? ...",
            "def f(x):\n    return x * 2\n",
            "The cat sat on the mat and looked out of the window.",
        ]
    )
    assert labels[:4] == ["und"] * 4 and list(scores[:4]) == [0.0] * 4
    assert labels[5] == "en" and scores[5] > 0.9
    keep, reasons = decide_languages(labels, scores, frozenset({"en"}), 0.65)
    assert list(keep) == [False] * 5 + [True]
    assert reasons[:4] == ["no_letters"] * 4
    assert reasons[4].startswith(("low_confidence:", "other_language:"))


def test_long_document_is_scored_on_a_bounded_prefix():
    model = LanguageIdentifier(max_chars=200)
    text = "This is an English sentence about the weather. " * 10 + "Ceci est une phrase française. " * 10000
    labels, _ = model.predict([text])
    assert labels == ["en"]  # only the prefix is read
    assert LanguageIdentifier().predict([text])[0] == ["fr"]  # the default prefix (5,000 chars) reaches French


def test_model_file_checks(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not a fasttext model at all")
    with pytest.raises(ModelFileError, match="bad magic"):
        check_fasttext_file(str(bad))
    with pytest.raises(ModelFileError, match="not found"):
        check_fasttext_file(str(tmp_path / "missing.bin"))


MIXED = {
    "en": [
        "The committee will publish its annual report on renewable energy next month.",
        "Children learn to read faster when their parents read aloud to them every evening.",
    ],
    "fr": [
        "Le comité publiera son rapport annuel sur les énergies renouvelables le mois prochain.",
        "Les enfants apprennent à lire plus vite quand leurs parents leur lisent des histoires le soir.",
    ],
    "de": [
        "Der Ausschuss veröffentlicht seinen Jahresbericht über erneuerbare Energien im nächsten Monat.",
        "Kinder lernen schneller lesen, wenn ihre Eltern ihnen jeden Abend vorlesen.",
    ],
    "ja": [
        "委員会は来月、再生可能エネルギーに関する年次報告書を発表します。",
        "親が毎晩本を読み聞かせると、子どもは早く字を覚えます。",
    ],
}


def test_mixed_language_routing_and_counts(tmp_path):
    rows = [{"id": f"{lang}-{i}", "text": t} for lang, texts in MIXED.items() for i, t in enumerate(texts)]
    rows.append({"id": "digits", "text": "0123 4567 8910"})
    write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    cfg = only_stages("language", language={"languages": ["en", "de"], "non_target": "route"})
    result = run_pipeline([tmp_path / "in.parquet"], out, cfg)
    kept = read_dir(out / "kept")
    assert sorted(kept.column("id").to_pylist()) == ["de-0", "de-1", "en-0", "en-1"]
    assert set(kept.column_names) >= {"lang", "lang_score"}
    routed = {d.name: sorted(read_dir(d).column("id").to_pylist()) for d in (out / "by_language").iterdir()}
    assert routed == {"fr": ["fr-0", "fr-1"], "ja": ["ja-0", "ja-1"]}
    rejects = read_rejects(out)["language"].to_pylist()
    assert [(r["id"], r["reason"], r["lang"]) for r in rejects] == [("digits", "no_letters", "und")]
    stage = next(s for s in result.funnel["stages"] if s["name"] == "language")
    assert stage["in"]["docs"] == 9 and stage["kept"]["docs"] == 4 and stage["rejected"]["docs"] == 5
    assert {k: v["docs"] for k, v in stage["rejected_by_reason"].items()} == {
        "no_letters": 1,
        "other_language:fr": 2,
        "other_language:ja": 2,
    }
    assert {k: v["docs"] for k, v in stage["kept_by_language"].items()} == {"de": 2, "en": 2}
    # the funnel's dropped column counts the routed documents: funnel.md and the report say where they went
    said = "language: 4 of its 5 dropped documents were routed to `by_language/<lang>/`"
    assert said in (out / "funnel.md").read_text()
    assert html.escape(said.replace("`", ""), quote=False) in (out / "report.html").read_text()


def test_real_documents_language_stage_matches_labels(tmp_path, real_docs_path):
    """Every real document is kept (its language is a target) and labelled as its gold language."""
    table = pq.read_table(real_docs_path, columns=["id", "text", "lang"])
    gold = dict(zip(table.column("id").to_pylist(), table.column("lang").to_pylist()))
    out = tmp_path / "out"
    cfg = only_stages(
        "language",
        language={
            "languages": sorted(set(gold.values())),
            "min_score": 0.0,
            "output_column": "lid_lang",
            "score_column": "lid_score",
        },
    )
    run_pipeline([real_docs_path], out, cfg)
    kept = read_dir(out / "kept")
    predicted = dict(zip(kept.column("id").to_pylist(), kept.column("lid_lang").to_pylist()))
    assert set(predicted) == set(gold)
    accuracy = np.mean([predicted[i] == gold[i] for i in gold])
    assert accuracy >= 0.999, Counter((gold[i], predicted[i]) for i in gold if predicted[i] != gold[i])
