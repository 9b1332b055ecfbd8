"""``curate train-quality``: train an educational-quality model from labelled Parquet.

Holds out a deterministic fraction (by a hash of the row's text, stratified by
label), trains on the rest, reports held-out ROC AUC and precision/recall at
0.5 and 0.8, and saves the evaluated model (JSON + float arrays, no pickle)
with a model card.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xxhash

from curate.classifiers import quality


class TrainingDataError(Exception):
    pass


def load_labelled(path: str, text_column: str, label_column: str) -> tuple[list[str], np.ndarray]:
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise TrainingDataError(f"{path}: not a readable Parquet file ({exc})") from exc
    for col in (text_column, label_column):
        if col not in table.column_names:
            raise TrainingDataError(f"{path}: column {col!r} not found (columns: {table.column_names})")
    texts = table.column(text_column).to_pylist()
    raw = table.column(label_column).to_pylist()
    labels = []
    for row, (text, label) in enumerate(zip(texts, raw)):
        if text is None:
            raise TrainingDataError(f"{path}: row {row}: {text_column} is null")
        if label in (0, 1, True, False):
            labels.append(int(label))
        else:
            raise TrainingDataError(f"{path}: row {row}: label {label!r} is not 0/1 or true/false")
    y = np.array(labels)
    if y.min() == y.max():
        raise TrainingDataError(f"{path}: every row has label {y[0]}; need both classes")
    return texts, y


def split_holdout(texts: list[str], labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test); per label, the rows whose text hash ranks lowest go to test."""
    test = np.zeros(len(texts), dtype=bool)
    hashes = np.array([xxhash.xxh64_intdigest(t.encode("utf-8")) for t in texts], dtype=np.uint64)
    for label in (0, 1):
        idx = np.flatnonzero(labels == label)
        k = max(1, int(round(fraction * len(idx))))
        test[idx[np.argsort(hashes[idx], kind="stable")[:k]]] = True
    return ~test, test


def train_and_report(data: str, text_column: str, label_column: str, model_type: str, out: str,
                     holdout: float = 0.2, C: float = 4.0) -> dict:
    texts, labels = load_labelled(data, text_column, label_column)
    train_mask, test_mask = split_holdout(texts, labels, holdout)
    train_texts = [t for t, m in zip(texts, train_mask) if m]
    test_texts = [t for t, m in zip(texts, test_mask) if m]
    model = quality.train(train_texts, labels[train_mask], model_type, C=C)
    scores = model.score(test_texts)
    y_test = labels[test_mask]
    metrics = {
        "heldout_docs": int(test_mask.sum()), "train_docs": int(train_mask.sum()),
        "roc_auc": round(quality.roc_auc(y_test, scores), 4),
        "at_0.5": quality.precision_recall_at(y_test, scores, 0.5),
        "at_0.8": quality.precision_recall_at(y_test, scores, 0.8),
    }
    model.card.update({"data": str(data), "text_column": text_column, "label_column": label_column,
                       "model_type": model_type, "holdout_fraction": holdout, "metrics": metrics})
    card = "\n".join([
        "# Educational-quality model", "",
        f"* Type: `{model_type}`, trained {datetime.date.today().isoformat()} by `curate train-quality`.",
        f"* Data: `{data}` ({len(texts)} rows, {int(labels.sum())} positive); held out {holdout:.0%} "
        "by text hash, stratified by label.",
        f"* Held-out ROC AUC: {metrics['roc_auc']:.4f}",
        f"* Held-out precision/recall at 0.5: {metrics['at_0.5']['precision']:.3f} / {metrics['at_0.5']['recall']:.3f}",
        f"* Held-out precision/recall at 0.8: {metrics['at_0.8']['precision']:.3f} / {metrics['at_0.8']['recall']:.3f}",
        "", "The saved model is the one evaluated (trained on the non-held-out rows).", "",
    ])
    model.save(out, card)
    Path(out, "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
