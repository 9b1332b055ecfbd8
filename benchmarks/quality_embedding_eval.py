"""Does a sentence-embedding model pay for the quality stage?  The FineWeb-Edu design, in our folds.

    python benchmarks/quality_embedding_eval.py     # needs the 'semantic' extra; ~4 min of embedding on one core

FineWeb-Edu's classifier is an embedding model with a linear head.  This puts that
design in the folds of ``quality_eval.py`` (the same 2,656 labelled documents, leave
one book / genre out, fold AUC against every out-of-fold document of the other
class) with the model the semantic stages ship: all-MiniLM-L6-v2 (int8 ONNX,
``classifiers.embedding``; a document is its first 256 word pieces, mean-pooled),
and a logistic regression per fold (class-balanced; C from ``C_GRID`` chosen by the
mean subject-fold AUC, as the default's C is).  Also in the same folds: the shipped
default's own features and settings (``quality_eval.ours``) and the two averaged
(each side's decision values standardized), to see whether the embedding adds what
the words miss.  Original text only: the embedding model is a candidate, not the
default, and its speed is the first question.

Speed: embedding documents on one core (onnxruntime, one intra-op thread), which is
what the stage would pay per document; the default's speed is in ``quality.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks import quality_eval as qe  # noqa: E402
from benchmarks.common import machine_facts, machine_line, require_shared, write_results  # noqa: E402
from curate.classifiers import embedding, quality  # noqa: E402
from curate.pipelines import train_quality as tq  # noqa: E402

C_GRID = (1.0, 10.0, 100.0)


def main() -> int:
    require_shared()
    if embedding.available() is not None:
        raise SystemExit(embedding.available())
    from sklearn.linear_model import LogisticRegression

    texts, labels, groups = qe.labelled_documents()
    stripped = quality.strip_markdown_batch(texts).to_pylist()
    emb = embedding.Embedder(cache_size=10)
    start = time.process_time()
    vectors = emb.embed(texts)
    embed_cpu_s = time.process_time() - start

    def linear_head(C):
        def fit_predict(train, test):
            clf = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(vectors[train], labels[train])
            return {"original": clf.decision_function(vectors[test])}

        return fit_predict

    by_c = {C: tq.leave_one_group_out(labels, groups, linear_head(C))["original"] for C in C_GRID}
    selection = {str(C): qe.view_folds(labels, groups, s)["subject"] for C, s in by_c.items()}
    best_c = max(C_GRID, key=lambda C: (selection[str(C)]["mean_roc_auc"], selection[str(C)]["worst_roc_auc"]))
    ours = tq.leave_one_group_out(
        labels,
        groups,
        qe.ours(
            texts,
            stripped,
            labels,
            qe.PREPROCESS,
            tq.DEFAULT_C,
            tq.DEFAULT_HAND_WEIGHT,
            groups if tq.DEFAULT_BALANCE_GROUPS else None,
        ),
    )["original"]

    def z(x):
        return (x - x.mean()) / x.std()

    scores = {
        "default": ours,
        "embedding": by_c[best_c],
        "average": (z(ours) + z(by_c[best_c])) / 2,
    }
    payload = {
        "machine": machine_facts(),
        "documents": len(texts),
        "selection_subject_folds": selection,
        "chosen_C": best_c,
        "folds": {name: qe.view_folds(labels, groups, s) for name, s in scores.items()},
        "embedding_docs_per_s_one_core": round(len(texts) / embed_cpu_s, 1),
        "mean_doc_chars": round(sum(map(len, texts)) / len(texts), 1),
    }
    write_results("quality_embedding", payload, render(payload))
    return 0


def render(p: dict) -> str:
    names = {
        "default": "shipped default's features and settings (hashed TF-IDF + hand features, logistic regression)",
        "embedding": f"all-MiniLM-L6-v2 mean-pooled + logistic regression C={p['chosen_C']:g}",
        "average": "the two averaged (standardized decision values)",
    }
    lines = [
        "# Quality: an embedding model with a linear head, in the cross-subject and cross-genre folds",
        "",
        f"{machine_line(p['machine'])}; `benchmarks/quality_embedding_eval.py`; {p['documents']:,} labelled "
        "documents, the folds of `quality.md`, original text.",
        "",
        "| model | subject folds: mean | worst | genre folds: mean | worst | all 22: mean | worst |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, name in names.items():
        f = p["folds"][key]
        cells = []
        for part in ("subject", "genre", "subject_and_genre"):
            s = f[part]
            cells += [f"{s['mean_roc_auc']:.4f}", f"{s['worst_roc_auc']:.4f} ({s['worst_fold'].split(':', 1)[-1]})"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "C of the embedding head chosen by the mean subject-fold AUC: "
        + "; ".join(
            f"C={c}: {s['mean_roc_auc']:.4f} (worst {s['worst_roc_auc']:.4f})"
            for c, s in p["selection_subject_folds"].items()
        )
        + ".",
        "",
        f"Embedding speed, one core: {p['embedding_docs_per_s_one_core']:,} documents/s "
        f"({p['mean_doc_chars']:,.0f} characters on average; each truncated to 256 word pieces).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
