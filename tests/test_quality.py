"""Educational-quality classifier, its stages, training CLI and safe model loading."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CURATE, only_stages, read_dir, read_rejects, run_pipeline, write_parquet

from curate.classifiers import quality
from curate.classifiers.textbook import python_blocks_valid, textbook_reasons

EDU = """# Sorting a list

A list can be sorted in place with `list.sort()`. Note that the method returns None because
it changes the list itself; in other words, there is no new list. For example:

```python
numbers = [3, 1, 2]
numbers.sort()
print(numbers)
```

- `sorted()` returns a new list
- `reverse=True` sorts in descending order

Therefore, use `sorted()` when the original order must be kept. This means the variable still
refers to the same object, and the function returns a new one.
"""
SPAM = "CLICK HERE to subscribe!!! Sign up now, free shipping, accept all cookies. Advertisement. lol omg"


def test_hand_features_count_what_they_name():
    feats = quality.hand_features([EDU, SPAM, ""])
    col = {name: feats[:, i] for i, name in enumerate(quality.HAND_FEATURES)}
    assert col["code_blocks"].tolist() == [1, 0, 0]
    assert col["headers"].tolist() == [1, 0, 0]
    assert col["list_items"].tolist() == [2, 0, 0]
    assert col["examples"][0] >= 1
    assert col["explanation_per_100w"][0] > 0 and col["explanation_per_100w"][1] == 0
    assert col["noise_per_100w"][1] > col["noise_per_100w"][0] == 0
    assert np.isfinite(feats).all()


def test_default_model_separates_real_genres(real_docs_path):
    t = pq.read_table(real_docs_path).to_pylist()
    textbooks = [r["text"] for r in t if r["genre"] == "textbook" and r["source"].startswith("OpenStax")][:60]
    reviews = [r["text"] for r in t if r["genre"] == "reviews"][:60]
    model = quality.load_model(quality.default_model_dir())
    s_edu, s_rev = model.score(textbooks), model.score(reviews)
    assert quality.roc_auc([1] * len(s_edu) + [0] * len(s_rev), np.concatenate([s_edu, s_rev])) > 0.99
    assert np.median(s_edu) > 0.8 > 0.5 > np.median(s_rev)


@pytest.mark.parametrize("model_type", ["ensemble", "tfidf"])
def test_scoring_kernel_equals_the_design_matrix_the_model_was_trained_on(real_docs_path, model_type):
    """``decision`` computes the TF-IDF dot product without the sparse matrix; it must
    agree with the design matrix training used (float32 rounding apart)."""
    texts = pq.read_table(real_docs_path, columns=["text"]).column(0).combine_chunks()[:800]
    texts = pa.concat_arrays([texts, pa.array(["", "a", "one two"], pa.string())])
    model = quality.load_model(quality.default_model_dir())
    if model_type == "tfidf":
        model = quality.train(texts.to_pylist()[:200], np.arange(200) % 2, model_type="tfidf")
    coef = np.concatenate(
        [c for c in (model.coef_hand if model.uses_hand() else None, model.coef_tfidf) if c is not None]
    )
    expected = np.asarray(model.design_matrix(texts) @ coef).ravel() + model.intercept
    np.testing.assert_allclose(model.decision(texts), expected, rtol=0, atol=1e-4)  # the CSR path sums in float32


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    texts = [EDU, SPAM, EDU.replace("list", "tuple"), SPAM + " buy now"] * 5
    labels = np.array([1, 0, 1, 0] * 5)
    for model_type in quality.MODEL_TYPES:
        model = quality.train(texts, labels, model_type, hashing=quality.HashingParams(n_features=2**12))
        model.save(tmp_path / model_type)
        again = quality.load_model(tmp_path / model_type)
        np.testing.assert_array_equal(model.score(texts), again.score(texts))


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "PWNED_BY_MODEL",))


def test_model_crafted_to_execute_code_on_load_is_refused(tmp_path):
    marker = Path(__file__).parent / "PWNED_BY_MODEL"
    model = quality.train([EDU, SPAM] * 3, np.array([1, 0] * 3), "features")
    model.save(tmp_path / "evil")
    # replace the weights with an object array whose unpickling would create a file
    evil = np.empty(1, dtype=object)
    evil[0] = _RunsCode()
    np.savez(tmp_path / "evil" / "weights.npz", coef_hand=evil, scaler_mean=evil, scaler_scale=evil)
    with pytest.raises(quality.ModelFormatError, match="refused"):
        quality.load_model(tmp_path / "evil")
    assert not marker.exists()
    # a bare pickle in place of model.json is not JSON and is refused too
    (tmp_path / "evil" / "model.json").write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(quality.ModelFormatError, match="not JSON"):
        quality.load_model(tmp_path / "evil")
    assert not marker.exists()
    # and the CLI turns it into exit 2 before any output is written
    write_parquet(tmp_path / "in.parquet", [{"id": "a", "text": EDU}])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"stages:\n  quality:\n    model_dir: {tmp_path / 'evil'}\n")
    proc = subprocess.run(
        [
            CURATE,
            "run",
            "--config",
            str(cfg),
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not JSON" in proc.stderr and not (tmp_path / "out").exists()
    assert not marker.exists()


def test_two_threshold_stages_and_rejects_carry_the_score(tmp_path, real_docs_path):
    t = pq.read_table(real_docs_path).to_pylist()
    rows = []
    for genre, n in (("textbook", 150), ("reviews", 150), ("email", 50), ("whow", 10)):
        rows += [{"id": r["id"], "text": r["text"], "genre": genre} for r in t if r["genre"] == genre][:n]
    write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    result = run_pipeline([tmp_path / "in.parquet"], out, only_stages("quality", quality={"low": 0.5, "high": 0.8}))
    stages = {s["name"]: s for s in result.funnel["stages"] if s["status"] == "run"}
    assert stages["quality>=0.5"]["in"]["docs"] == len(rows)
    assert stages["quality>=0.8"]["in"]["docs"] == stages["quality>=0.5"]["kept"]["docs"]
    kept = read_dir(out / "kept")
    assert min(kept.column("edu_score").to_pylist()) >= 0.8
    rejects = read_rejects(out)
    low = rejects["quality_ge_0.5"].to_pylist()  # rejects/<stage> folders are shell-safe
    assert low and all(r["edu_score"] < 0.5 and r["reason"] == "edu_score<0.5" for r in low)
    if "quality_ge_0.8" in rejects:
        assert all(0.5 <= r["edu_score"] < 0.8 for r in rejects["quality_ge_0.8"].to_pylist())
    kept_genres = kept.column("genre").to_pylist()
    assert kept_genres.count("textbook") > 0.9 * sum(r["genre"] == "textbook" for r in rows)
    assert sum(g == "reviews" for g in kept_genres) <= 0.02 * sum(r["genre"] == "reviews" for r in rows)


def test_train_quality_cli_writes_a_usable_model(tmp_path, real_docs_path):
    t = pq.read_table(real_docs_path).to_pylist()
    rows = [
        {"body": r["text"], "is_edu": r["genre"] in ("textbook", "academic", "whow")}
        for r in t
        if r["lang"] == "en" and r["genre"] in ("textbook", "academic", "whow", "reviews", "answers", "email")
    ]
    write_parquet(tmp_path / "labelled.parquet", rows)
    proc = subprocess.run(
        [
            CURATE,
            "train-quality",
            "--data",
            str(tmp_path / "labelled.parquet"),
            "--text-column",
            "body",
            "--label-column",
            "is_edu",
            "--model-type",
            "features",
            "--out",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "held-out ROC AUC" in proc.stdout and "threshold 0.8" in proc.stdout
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {"model.json", "weights.npz", "MODEL_CARD.md"}
    auc = float(proc.stdout.split("ROC AUC ")[1].split()[0])
    assert auc > 0.95
    model = quality.load_model(tmp_path / "model")
    assert model.model_type == "features" and model.score([EDU])[0] > model.score([SPAM])[0]
    bad = subprocess.run(
        [
            CURATE,
            "train-quality",
            "--data",
            str(tmp_path / "labelled.parquet"),
            "--text-column",
            "body",
            "--label-column",
            "nope",
            "--out",
            str(tmp_path / "m2"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "'nope'" in bad.stderr
    # the held-out path trains the default's recipe, calibrated, so 0.5 and 0.8 mean the same as for the default
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["calibration"]["method"] == "isotonic" and meta["preprocess"] == "strip_markdown"
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["calibration"]["ece"] < 0.2

    def train(*args):
        cmd = [CURATE, "train-quality", "--data", str(tmp_path / "labelled.parquet"), "--text-column", "body"]
        return subprocess.run(cmd + ["--label-column", "is_edu", *args], capture_output=True, text=True)

    before = (tmp_path / "model" / "weights.npz").read_bytes()
    again = train("--out", str(tmp_path / "model"))  # a model is there: not replaced without --overwrite
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "model" / "weights.npz").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    onto_file = train("--out", str(tmp_path / "afile"))
    assert onto_file.returncode == 2 and "is a file" in onto_file.stderr and "Traceback" not in onto_file.stderr
    write_parquet(tmp_path / "tiny.parquet", [{"text": EDU, "label": 1}, {"text": SPAM, "label": 0}])
    tiny = subprocess.run(
        [CURATE, "train-quality", "--data", str(tmp_path / "tiny.parquet"), "--out", str(tmp_path / "m4")],
        capture_output=True,
        text=True,
    )
    assert tiny.returncode == 2 and "need at least 10 of each" in tiny.stderr and "Traceback" not in tiny.stderr
    numbers = subprocess.run(  # a text column that is not text
        [CURATE, "train-quality", "--data", str(tmp_path / "tiny.parquet"), "--text-column", "label"]
        + ["--out", str(tmp_path / "m5")],
        capture_output=True,
        text=True,
    )
    assert numbers.returncode == 2 and "'label' has type int64, expected string" in numbers.stderr
    missing = train("--data", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "m7"))
    assert missing.returncode == 2 and "nope.parquet: does not exist" in missing.stderr
    long_label = train("--label-column", "body", "--out", str(tmp_path / "m6"))
    assert long_label.returncode == 2 and len(long_label.stderr) < 400  # the value is cut, not the whole document


def test_damaged_model_files_are_refused_naming_the_problem(tmp_path):
    """A truncated weights file, a non-number or NaN intercept: refused at load (a NaN intercept
    scored every document NaN, which rejected every one)."""
    import shutil

    from curate.classifiers.quality import ModelFormatError, default_model_dir

    for name, damage, needle in [
        (
            "truncated",
            lambda d: (d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:1000]),
            "weights.npz",
        ),
        ("empty", lambda d: (d / "weights.npz").write_bytes(b""), "weights.npz"),
        ("text", lambda d: _edit_meta(d, intercept="abc"), "intercept"),
        ("nan", lambda d: _edit_meta(d, intercept=float("nan")), "intercept"),
    ]:
        d = tmp_path / name
        shutil.copytree(default_model_dir(), d)
        damage(d)
        with pytest.raises(ModelFormatError) as err:
            quality.load_model(d)
        assert needle in str(err.value), (name, str(err.value))


def _edit_meta(d, **changes):
    meta = json.loads((d / "model.json").read_text())
    meta.update(changes)
    (d / "model.json").write_text(json.dumps(meta))


def test_textbook_heuristics_parse_code_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    side_effect = f"open({str(marker)!r}, 'w').write('x')"
    good = EDU + f"\n```python\n{side_effect}\n```\n" + " because word" * 60
    broken = EDU + "\n```python\ndef broken(:\n    pass\n```\n" + " because word" * 60
    short = "Note that this is short because it is."
    reasons = textbook_reasons(pa.array([good, broken, short, "word " * 150]))
    assert reasons == ["", "invalid_code_block", "too_few_words", "too_few_educational_markers"]
    assert python_blocks_valid("```pycon\n>>> x = 1\n>>> print(x)\n1\n```")
    assert python_blocks_valid("```bash\nls -la (\n```")  # not Python: not checked
    assert not marker.exists()


# ---- cross-subject model (issue 28) -------------------------------------------------------------

# Explanatory text on subjects that are in none of the training books (geology, chemistry),
# written for this test.
UNSEEN_SUBJECT = [
    """# Plate tectonics

The outer shell of Earth, the lithosphere, is broken into plates that move a few centimetres per year.
Where two plates move apart, magma rises and forms new crust; this process is called seafloor spreading.
For example, the Mid-Atlantic Ridge is a boundary where the North American and Eurasian plates separate.
Note that earthquakes are concentrated along plate boundaries because the plates grind past one another.
In other words, the distribution of earthquakes and volcanoes is evidence for the theory of plate motion.
""",
    """Chemical equilibrium

A reversible reaction reaches equilibrium when the rates of the forward and reverse reactions are equal.
The equilibrium constant K is defined as the ratio of the concentrations of the products to those of the
reactants, each raised to the power of its coefficient. Therefore, a large K means that products dominate
at equilibrium. Consider the synthesis of ammonia: increasing the pressure shifts the equilibrium toward
the side with fewer moles of gas, as Le Chatelier's principle predicts.
""",
]


def test_shipped_model_scores_unseen_subjects_above_web_genres(real_docs_path):
    t = pq.read_table(real_docs_path).to_pylist()
    model = quality.load_model(quality.default_model_dir())
    edu = model.score(UNSEEN_SUBJECT)
    for genre in ("reviews", "answers", "newsgroup", "email"):
        other = model.score([r["text"] for r in t if r["genre"] == genre][:40])
        assert edu.min() > np.quantile(other, 0.9), genre
    assert edu.min() >= 0.8


def test_shipped_model_is_calibrated_and_markdown_invariant():
    model = quality.load_model(quality.default_model_dir())
    assert model.preprocess == "strip_markdown" and model.calibration["method"] == "isotonic"
    texts = [EDU, SPAM] + UNSEEN_SUBJECT
    np.testing.assert_allclose(model.score(texts), model.score([quality.strip_markdown(x) for x in texts]), atol=1e-6)
    z = np.linspace(-20, 20, 401)
    s = model.score_decision(z)
    assert np.all(np.diff(s) >= 0) and s[0] < 0.05 and s[-1] > 0.95


def test_calibration_maps_are_checked_on_load(tmp_path):
    model = quality.train([EDU, SPAM] * 3, np.array([1, 0] * 3), "features", preprocess="strip_markdown")
    model.calibration = {"method": "isotonic", "x": [-1.0, 0.0, 1.0], "y": [0.1, 0.5, 0.9]}
    model.save(tmp_path / "ok")
    again = quality.load_model(tmp_path / "ok")
    np.testing.assert_array_equal(again.score([EDU, SPAM]), model.score([EDU, SPAM]))
    meta = json.loads((tmp_path / "ok" / "model.json").read_text())
    meta["calibration"]["y"] = [0.9, 0.5, 0.1]  # decreasing: not a calibration
    (tmp_path / "ok" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(quality.ModelFormatError, match="isotonic"):
        quality.load_model(tmp_path / "ok")
    # a format-2 file (no preprocess, no calibration) still loads and scores as it did
    model = quality.train([EDU, SPAM] * 3, np.array([1, 0] * 3), "features")
    model.save(tmp_path / "v2")
    meta = json.loads((tmp_path / "v2" / "model.json").read_text())
    meta["format_version"] = 2
    del meta["preprocess"], meta["calibration"]
    (tmp_path / "v2" / "model.json").write_text(json.dumps(meta))
    v2 = quality.load_model(tmp_path / "v2")
    assert v2.preprocess == "none" and v2.calibration is None
    np.testing.assert_array_equal(v2.score([EDU, SPAM]), model.score([EDU, SPAM]))


def test_group_balanced_weights_give_every_group_the_same_total():
    groups = np.array(["big"] * 6 + ["small"] * 2 + ["one"])
    w = quality.group_balanced_weights(groups)
    totals = [w[groups == g].sum() for g in ("big", "small", "one")]
    np.testing.assert_allclose(totals, [3.0, 3.0, 3.0])  # nine rows, mean weight 1, three groups
    assert w[0] == w[5] and w[6] == w[7] and w[8] == 2 * w[6] == 6 * w[0]


def test_group_balance_moves_the_boundary_towards_a_small_group():
    """Unweighted, five copies of one negative genre outvote the single other; balanced, both count."""
    texts = [
        EDU,
        EDU + " more",
        SPAM,
        SPAM + " again",
        SPAM + " once more",
        SPAM + " five",
        SPAM + " six",
        "chatter lol",
    ]
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    groups = np.array(["edu", "edu", "spam", "spam", "spam", "spam", "spam", "chat"])
    plain = quality.train(texts, labels, "tfidf", C=4.0)
    balanced = quality.train(texts, labels, "tfidf", C=4.0, sample_weight=quality.group_balanced_weights(groups))
    # the lone 'chat' document weighs as much as the five spam pages together: it is pushed lower
    assert balanced.decision(["chatter lol"])[0] < plain.decision(["chatter lol"])[0]


def test_leave_one_group_out_never_trains_on_the_scored_group():
    from curate.pipelines import train_quality as tq

    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    groups = np.array(["a", "a", "b", "b", "x", "x", "y", "y"])
    seen = []

    def fit_predict(train, test):
        assert not set(groups[train]) & set(groups[test])
        seen.append(set(groups[test].tolist()))
        return {"s": np.where(groups[test] == "b", 0.2, labels[test].astype(float))}

    oof = tq.leave_one_group_out(labels, groups, fit_predict)["s"]
    assert sorted(map(sorted, seen)) == [["a"], ["b"], ["x"], ["y"]]
    folds = tq.fold_aucs(labels, groups, oof)
    # group b scores 0.2, below no negative (0.0): still ranked above them; a scores 1.0
    assert folds["a"]["roc_auc"] == 1.0 and folds["b"]["roc_auc"] == 1.0 and folds["x"]["roc_auc"] == 1.0
    oof[groups == "b"] = -1.0  # now b ranks below every negative
    folds = tq.fold_aucs(labels, groups, oof)
    assert folds["b"]["roc_auc"] == 0.0 and tq.summarize_folds(folds)["worst_fold"] == "b"


def test_train_quality_group_cv_reports_every_fold(tmp_path, real_docs_path):
    textbooks = real_docs_path.parent / "textbooks.parquet"
    if not textbooks.is_file():
        pytest.skip(f"{textbooks} not found (../shared is present in CI only)")
    rows = []
    for r in pq.read_table(textbooks).to_pylist():
        book = r["source"].split()[-1]
        if book in ("astronomy", "economics", "calculus", "psychology") and sum(x["book"] == book for x in rows) < 12:
            rows.append({"body": r["text"][:3000], "is_edu": 1, "book": book})
    for r in pq.read_table(real_docs_path).to_pylist():
        if (
            r["genre"] in ("reviews", "answers", "newsgroup", "weblog")
            and sum(x["book"] == r["genre"] for x in rows) < 12
        ):
            rows.append({"body": r["text"], "is_edu": 0, "book": r["genre"]})
    write_parquet(tmp_path / "labelled.parquet", rows)
    proc = subprocess.run(
        [
            CURATE,
            "train-quality",
            "--data",
            str(tmp_path / "labelled.parquet"),
            "--text-column",
            "body",
            "--label-column",
            "is_edu",
            "--group-column",
            "book",
            "--out",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    fold_lines = [line for line in proc.stdout.splitlines() if line.startswith("fold ")]
    assert sorted(line.split()[1].rstrip(":") for line in fold_lines) == sorted(
        ["astronomy", "economics", "calculus", "psychology", "reviews", "answers", "newsgroup", "weblog"]
    )
    aucs = [float(line.split("ROC AUC ")[1].split()[0]) for line in fold_lines]
    worst = float(proc.stdout.split("worst fold ROC AUC ")[1].split()[0])
    mean = float(proc.stdout.split("mean fold ROC AUC ")[1].split(";")[0])
    assert worst == min(aucs) and abs(mean - np.mean(aucs)) < 1e-3
    assert mean > 0.8  # 96 short documents: honest folds are far from perfect, but well above chance
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["worst_roc_auc"] == worst and len(metrics["folds"]) == 8
    model = quality.load_model(tmp_path / "model")
    assert model.calibration and model.score(UNSEEN_SUBJECT).min() > model.score([SPAM])[0]
    assert model.card["groups_balanced"] is True  # the default with a group column
    assert "every group weighing the same: True" in (tmp_path / "model" / "MODEL_CARD.md").read_text()
    bad = subprocess.run(
        [
            CURATE,
            "train-quality",
            "--data",
            str(tmp_path / "labelled.parquet"),
            "--text-column",
            "body",
            "--label-column",
            "is_edu",
            "--group-column",
            "nope",
            "--out",
            str(tmp_path / "m2"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "'nope'" in bad.stderr
    lone = subprocess.run(
        [CURATE, "train-quality", "--data", str(tmp_path / "labelled.parquet"), "--out", str(tmp_path / "m3")]
        + ["--no-group-balance"],
        capture_output=True,
        text=True,
    )
    assert lone.returncode == 2 and "--group-column" in lone.stderr and not (tmp_path / "m3").exists()
