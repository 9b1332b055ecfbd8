"""``curate train-quality``: train an educational-quality model from labelled Parquet.

Without a group column: holds out a deterministic fraction (by a hash of the
row's text, stratified by label), trains on the rest with the shipped default's
recipe (markdown stripped, its C and hand-feature weight) and an isotonic
calibration fitted on out-of-fold decision values of the training rows (5 folds
by text hash), so the 0.5 and 0.8 cuts mean what they mean for the default;
reports held-out ROC AUC and precision/recall at 0.5 and 0.8 of the calibrated
scores, and saves the evaluated model (JSON + float arrays, no pickle) with a
model card.

With ``--group-column`` (a book, subject, source or genre per row): leave one
group out -- every row is scored by a model that never saw its group -- and
report each fold's ROC AUC, the mean and the worst fold, plus precision/recall
of the pooled out-of-fold scores; a split by rows would let a model that has
learned a book's vocabulary score that book's other sections.  The saved model
is then trained on all rows, with an isotonic calibration fitted on the
out-of-fold decision values.  The benchmark (``benchmarks/quality_eval.py``)
uses the same functions.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from curate.classifiers import quality


class TrainingDataError(Exception):
    pass


def check_model_output(out: str, overwrite: bool) -> None:
    """Before any training: ``out`` must be a folder that is absent or empty, or ``overwrite``
    given; a model written over another would leave earlier runs' records (run.json names the
    model folder) pointing at a different model."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise TrainingDataError(f"--out {out}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise TrainingDataError(
            f"--out {out}: exists and is not empty; pass --overwrite to replace the model in it, or choose a new folder"
        )


def load_labelled(path: str, text_column: str, label_column: str, group_column: str | None = None):
    """(texts, labels) -- and groups as a third item when ``group_column`` is given."""
    if not Path(path).exists():
        raise TrainingDataError(f"--data {path}: does not exist")
    if Path(path).is_dir():
        raise TrainingDataError(f"--data {path}: is a folder; give one Parquet file")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise TrainingDataError(f"{path}: not a readable Parquet file ({exc})") from exc
    for col in (text_column, label_column) + ((group_column,) if group_column else ()):
        if col not in table.column_names:
            raise TrainingDataError(f"{path}: column {col!r} not found (columns: {table.column_names})")
    text_type = table.schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise TrainingDataError(f"{path}: column {text_column!r} has type {text_type}, expected string")
    texts = table.column(text_column).to_pylist()
    raw = table.column(label_column).to_pylist()
    labels = []
    for row, (text, label) in enumerate(zip(texts, raw)):
        if text is None:
            raise TrainingDataError(f"{path}: row {row}: {text_column} is null")
        if label in (0, 1, True, False):
            labels.append(int(label))
        else:
            shown = repr(label) if len(repr(label)) <= 60 else repr(label)[:57] + "..."
            raise TrainingDataError(f"{path}: row {row}: label {shown} in {label_column!r} is not 0/1 or true/false")
    y = np.array(labels)
    if y.min() == y.max():
        raise TrainingDataError(f"{path}: every row has label {y[0]}; need both classes")
    counts = np.bincount(y, minlength=2)
    if counts.min() < MIN_PER_CLASS:
        raise TrainingDataError(
            f"{path}: {counts[1]} positive and {counts[0]} negative rows; need at least {MIN_PER_CLASS} of each "
            "(a model, its calibration folds and its evaluation need both classes in every part)"
        )
    if not group_column:
        return texts, y
    groups = table.column(group_column).to_pylist()
    if any(g is None for g in groups):
        raise TrainingDataError(f"{path}: {group_column} has nulls; every row needs a group")
    groups = np.array([str(g) for g in groups])
    n_groups = len(set(groups.tolist()))
    if not 2 <= n_groups <= MAX_GROUPS:
        raise TrainingDataError(
            f"{path}: {group_column} has {n_groups} distinct values; group cross-validation needs 2 to {MAX_GROUPS}"
        )
    return texts, y, groups


def hash_ranks(texts: list[str], labels: np.ndarray) -> np.ndarray:
    """Each row's rank by the hash of its text among the rows of its label (0, 1, ...): the
    deterministic, stratified order that holdout and folds are cut from."""
    ranks = np.zeros(len(texts), dtype=int)
    hashes = np.array([xxhash.xxh64_intdigest(t.encode("utf-8")) for t in texts], dtype=np.uint64)
    for label in (0, 1):
        idx = np.flatnonzero(labels == label)
        ranks[idx[np.argsort(hashes[idx], kind="stable")]] = np.arange(len(idx))
    return ranks


def split_holdout(
    texts: list[str], labels: np.ndarray, fraction: float, ranks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test); per label, the rows whose text hash ranks lowest go to test
    (``ranks``: ``hash_ranks``' answer, when the caller has it)."""
    ranks = hash_ranks(texts, labels) if ranks is None else ranks
    per_label = np.bincount(labels, minlength=2)
    k = np.maximum(1, np.round(fraction * per_label).astype(int))
    test = ranks < k[labels]
    return ~test, test


MAX_GROUPS = 60  # leave-one-group-out fits one model per group
MIN_PER_CLASS = 10  # rows of each label: enough for a held-out part and 5 calibration folds with both classes
CALIBRATION_FOLDS = 5
# The shipped default's regularization: C and the weight of the standardized hand
# features against the unit-norm TF-IDF row, chosen by the cross-subject folds of
# benchmarks/quality_eval.py (see benchmarks/results/quality.md).
DEFAULT_C = 64.0
DEFAULT_HAND_WEIGHT = 0.03
# With a group column, every group weighs the same in training (``quality.group_balanced_weights``),
# as the shipped default was trained: chosen by the same cross-subject folds.
DEFAULT_BALANCE_GROUPS = True


def leave_one_group_out(labels: np.ndarray, groups: np.ndarray, fit_predict) -> dict[str, np.ndarray]:
    """Out-of-fold scores: for each group, ``fit_predict(train_rows, test_rows)`` trains on
    every other group and returns ``{view: scores of test_rows}``; returns ``{view: scores}``
    for all rows, each row scored by the model that never saw its group."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    oof: dict[str, np.ndarray] = {}
    for group in sorted(set(groups.tolist())):
        test = groups == group
        train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
        if len(set(labels[train_rows].tolist())) < 2:
            raise TrainingDataError(f"group {group!r}: the other groups hold only one class; cannot train without it")
        for view, scores in fit_predict(train_rows, test_rows).items():
            oof.setdefault(view, np.full(len(labels), np.nan))[test_rows] = scores
    return oof


def fold_aucs(labels: np.ndarray, groups: np.ndarray, scores: np.ndarray) -> dict[str, dict]:
    """Per group (fold): ROC AUC of its out-of-fold scores.  A group holding both
    classes is scored on its own rows; a one-class group (a book, a genre) against
    every row of the other class outside it (themselves out of fold)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    out = {}
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        classes = set(labels[inside].tolist())
        rows = inside if len(classes) == 2 else inside | (~inside & (labels != next(iter(classes))))
        out[group] = {
            "docs": int(inside.sum()),
            "positives": int(labels[inside].sum()),
            "against": "own rows" if len(classes) == 2 else "other class, all groups",
            "roc_auc": round(quality.roc_auc(labels[rows], scores[rows]), 4),
        }
    return out


def summarize_folds(per_fold: dict[str, dict], names=None) -> dict:
    names = list(per_fold) if names is None else [n for n in names if n in per_fold]
    aucs = {n: per_fold[n]["roc_auc"] for n in names}
    worst = min(aucs, key=aucs.get)
    return {
        "folds": len(aucs),
        "mean_roc_auc": round(float(np.mean(list(aucs.values()))), 4),
        "worst_roc_auc": aucs[worst],
        "worst_fold": worst,
    }


def fit_isotonic(decisions: np.ndarray, labels: np.ndarray, max_points: int = 64) -> dict:
    """An isotonic calibration map (``quality.check_calibration``) of decision values to
    P(label=1), fitted by scikit-learn and kept as at most ``max_points`` knots."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(decisions, labels)
    x, y = np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)
    # the knots where the step function changes level (both ends of each level), deduplicated
    keep = np.ones(len(x), dtype=bool)
    keep[1:-1] = (np.diff(y)[1:] != 0) | (np.diff(y)[:-1] != 0)
    x, y = x[keep], y[keep]
    if len(x) > max_points:
        idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[idx], y[idx]
    x, first = np.unique(x, return_index=True)
    return quality.check_calibration({"method": "isotonic", "x": x.tolist(), "y": y[first].tolist()})


def calibration_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram data (equal-width bins of the score), expected calibration
    error (weighted mean |accuracy - confidence| over bins) and precision of the >= 0.8 band."""
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            conf, acc = float(scores[m].mean()), float(labels[m].mean())
            ece += m.sum() / len(scores) * abs(acc - conf)
            rows.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "docs": int(m.sum()),
                    "mean_score": round(conf, 4),
                    "fraction_educational": round(acc, 4),
                }
            )
    high = scores >= 0.8
    return {
        "bins": rows,
        "ece": round(float(ece), 4),
        "precision_at_0.8": round(float(labels[high].mean()), 4) if high.any() else None,
        "recall_at_0.8": round(float(high[labels == 1].mean()), 4),
    }


def cross_calibrated(decisions: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Calibrated out-of-fold scores whose calibration is out of fold too: each group's
    decision values go through the isotonic map fitted on every other group's."""
    out = np.empty(len(decisions))
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        cal = fit_isotonic(decisions[~inside], labels[~inside])
        out[inside] = quality.calibrate(cal, decisions[inside])
    return out


def train_grouped(
    data: str,
    text_column: str,
    label_column: str,
    group_column: str,
    model_type: str,
    out: str,
    C: float = DEFAULT_C,
    hand_weight: float = DEFAULT_HAND_WEIGHT,
    preprocess: str = "strip_markdown",
    balance_groups: bool = DEFAULT_BALANCE_GROUPS,
) -> dict:
    """Leave-one-group-out evaluation, then the model trained on every row, calibrated out of fold."""
    texts, labels, groups = load_labelled(data, text_column, label_column, group_column)
    features = quality.featurize(texts, model_type, preprocess=preprocess)

    def weights(rows):
        return quality.group_balanced_weights(groups[rows]) if balance_groups else None

    def fit_predict(train, test):
        model = quality.fit(
            features.take(train),
            labels[train],
            model_type,
            C=C,
            preprocess=preprocess,
            hand_weight=hand_weight,
            sample_weight=weights(train),
        )
        return {"decision": model.decision([texts[i] for i in test])}

    decisions = leave_one_group_out(labels, groups, fit_predict)["decision"]
    per_fold = fold_aucs(labels, groups, decisions)
    scores = cross_calibrated(decisions, labels, groups)
    metrics = {
        "group_column": group_column,
        **summarize_folds(per_fold),
        "folds": per_fold,
        "pooled_out_of_fold_roc_auc": round(quality.roc_auc(labels, decisions), 4),
        "at_0.5": quality.precision_recall_at(labels, scores, 0.5),
        "at_0.8": quality.precision_recall_at(labels, scores, 0.8),
        "calibration": calibration_table(labels, scores),
    }
    everything = np.arange(len(labels))
    model = quality.fit(
        features,
        labels,
        model_type,
        C=C,
        preprocess=preprocess,
        hand_weight=hand_weight,
        sample_weight=weights(everything),
    )
    model.calibration = fit_isotonic(decisions, labels)
    model.card.update(
        {
            "data": str(data),
            "text_column": text_column,
            "label_column": label_column,
            "model_type": model_type,
            "C": C,
            "hand_weight": hand_weight,
            "preprocess": preprocess,
            "groups_balanced": balance_groups,
            "trained_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "metrics": {k: v for k, v in metrics.items() if k != "folds"},
        }
    )
    fold_lines = [f"| {g} | {r['docs']} | {r['positives']} | {r['roc_auc']:.4f} |" for g, r in per_fold.items()]
    card = "\n".join(
        [
            "# Educational-quality model",
            "",
            f"* Type: `{model_type}` (C={C:g}, hand-feature weight {hand_weight:g}, markdown cues stripped before featurizing: {preprocess == 'strip_markdown'}, "
            f"every group weighing the same: {balance_groups}), "
            f"trained {datetime.date.today().isoformat()} by `curate train-quality --group-column {group_column}`.",
            f"* Data: `{data}` ({len(texts)} rows, {int(labels.sum())} positive, {len(per_fold)} groups).",
            f"* Leave one group out: mean fold ROC AUC {metrics['mean_roc_auc']:.4f}, worst {metrics['worst_roc_auc']:.4f} "
            f"({metrics['worst_fold']}).",
            f"* Out-of-fold precision/recall at 0.8 (calibrated): {metrics['at_0.8']['precision']:.3f} / "
            f"{metrics['at_0.8']['recall']:.3f}; expected calibration error {metrics['calibration']['ece']:.4f}.",
            "",
            "| group | rows | positives | ROC AUC |",
            "|---|---:|---:|---:|",
            *fold_lines,
            "",
            "A one-class group is scored against every out-of-fold row of the other class.",
            "The saved model is trained on all rows; its calibration map is fitted on the out-of-fold decision values.",
            "",
        ]
    )
    model.save(out, card)
    Path(out, "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2, sort_keys=True) + "\n")
    return metrics


def grouped_summary(metrics: dict, group_column: str, out: str) -> str:
    """What ``curate train-quality --group-column`` prints: every fold, the mean and the worst."""
    lines = [f"leave one {group_column} out: {len(metrics['folds'])} folds"]
    lines += [
        f"fold {group}: ROC AUC {r['roc_auc']:.4f} ({r['docs']} documents, {r['positives']} positive)"
        for group, r in metrics["folds"].items()
    ]
    lines.append(
        f"mean fold ROC AUC {metrics['mean_roc_auc']:.4f}; worst fold ROC AUC {metrics['worst_roc_auc']:.4f} "
        f"({metrics['worst_fold']})"
    )
    lines += [
        f"out of fold, threshold {m['threshold']}: precision {m['precision']:.3f} recall {m['recall']:.3f}"
        for m in (metrics["at_0.5"], metrics["at_0.8"])
    ]
    lines.append(f"model written to {out}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN (precision with nothing selected) as null: ``json.dumps`` would write NaN, which is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def train_and_report(
    data: str,
    text_column: str,
    label_column: str,
    model_type: str,
    out: str,
    holdout: float = 0.2,
    C: float = DEFAULT_C,
    hand_weight: float = DEFAULT_HAND_WEIGHT,
    preprocess: str = "strip_markdown",
) -> dict:
    """Hold out a part, train the default's recipe on the rest with an out-of-fold isotonic
    calibration, and report the held-out part's calibrated scores."""
    texts, labels = load_labelled(data, text_column, label_column)
    ranks = hash_ranks(texts, labels)
    train_mask, test_mask = split_holdout(texts, labels, holdout, ranks)
    train_rows, test_rows = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
    train_texts, y_train = [texts[i] for i in train_rows], labels[train_rows]
    features = quality.featurize(train_texts, model_type, preprocess=preprocess)

    def fit(rows):  # rows: positions in ``train_rows``
        return quality.fit(
            features.take(rows), y_train[rows], model_type, C=C, preprocess=preprocess, hand_weight=hand_weight
        )

    def fit_predict(train, test):
        return {"decision": fit(train).decision([train_texts[i] for i in test])}

    # calibration folds: the training rows dealt round-robin in hash order, per label
    folds = ranks[train_rows] % CALIBRATION_FOLDS
    decisions = leave_one_group_out(y_train, folds, fit_predict)["decision"]
    model = fit(np.arange(len(train_rows)))
    model.calibration = fit_isotonic(decisions, y_train)
    scores = model.score([texts[i] for i in test_rows])
    y_test = labels[test_rows]
    metrics = {
        "heldout_docs": len(test_rows),
        "train_docs": len(train_rows),
        "roc_auc": round(quality.roc_auc(y_test, scores), 4),
        "at_0.5": quality.precision_recall_at(y_test, scores, 0.5),
        "at_0.8": quality.precision_recall_at(y_test, scores, 0.8),
        "calibration": calibration_table(y_test, scores),
    }
    model.card.update(
        {
            "data": str(data),
            "text_column": text_column,
            "label_column": label_column,
            "model_type": model_type,
            "C": C,
            "hand_weight": hand_weight,
            "preprocess": preprocess,
            "holdout_fraction": holdout,
            "metrics": _json_safe(metrics),
        }
    )
    card = "\n".join(
        [
            "# Educational-quality model",
            "",
            f"* Type: `{model_type}` (C={C:g}, hand-feature weight {hand_weight:g}, markdown cues stripped before "
            f"featurizing: {preprocess == 'strip_markdown'}), trained {datetime.date.today().isoformat()} by "
            "`curate train-quality`; scores calibrated (isotonic, fitted on out-of-fold decision values of the "
            f"training rows, {CALIBRATION_FOLDS} folds by text hash).",
            f"* Data: `{data}` ({len(texts)} rows, {int(labels.sum())} positive); held out {holdout:.0%} "
            "by text hash, stratified by label.",
            f"* Held-out ROC AUC: {metrics['roc_auc']:.4f}",
            f"* Held-out precision/recall at 0.5: {metrics['at_0.5']['precision']:.3f} / {metrics['at_0.5']['recall']:.3f}",
            f"* Held-out precision/recall at 0.8: {metrics['at_0.8']['precision']:.3f} / {metrics['at_0.8']['recall']:.3f}",
            "",
            "The saved model is the one evaluated (trained on the non-held-out rows).",
            "",
        ]
    )
    model.save(out, card)
    Path(out, "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2, sort_keys=True) + "\n")
    return metrics
