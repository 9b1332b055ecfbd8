"""The embedding step on a GPU (PyTorch, fp16), and vectors for the CPU run's cache.

The CPU path (``classifiers.embedding``) runs the ONNX model on onnxruntime.  The
GPU machine's onnxruntime has no CUDA provider, so this runs the *same weights*
in PyTorch: ``export`` (here, needs the ``onnx`` package) dequantizes the int8
initializers of the ONNX file into an .npz; ``main`` (on the GPU machine) runs
BERT (6 layers, 12 heads, erf-GELU, post-LayerNorm) in fp16 with mean pooling,
checks it against onnxruntime-CPU on a sample, times it, and can also embed a
list of texts with onnxruntime-CPU on all the machine's cores into the
Embedder's cache format (so the evaluation reuses vectors from the CPU model).

    python benchmarks/semantic_gpu.py export build/semgpu/weights.npz
    python benchmarks/semantic_gpu.py run build/semgpu OUT_DIR     # on the GPU machine
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

LAYERS, HEADS, DIM = 6, 12, 384


def export(out: str):
    import onnx
    from onnx import numpy_helper

    from curate.classifiers.embedding import model_path

    m = onnx.load(str(model_path()))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}

    def deq(name):  # kept as int8 + per-column scale (the file's own quantization), 23 MB
        return {"q": init[name + "_q"], "scale": init[name + "_scale"].astype(np.float32)}

    w = {
        "word": deq("inner.embeddings.word_embeddings.weight"),
        "pos": deq("inner.embeddings.position_embeddings.weight"),
        "type": init["inner.embeddings.token_type_embeddings.weight"],
        "ln_w": init["inner.embeddings.LayerNorm.weight"],
        "ln_b": init["inner.embeddings.LayerNorm.bias"],
    }
    mats = sorted({k[:-2] for k in init if k.startswith("val_") and k.endswith("_q")}, key=lambda s: int(s[4:]))
    assert len(mats) == 6 * LAYERS, mats
    for layer in range(LAYERS):
        p = f"inner.encoder.layer.{layer}."
        q, k, v, o, i, f = (deq(n) for n in mats[6 * layer : 6 * layer + 6])
        w.update({f"{layer}.q": q, f"{layer}.k": k, f"{layer}.v": v, f"{layer}.o": o, f"{layer}.i": i, f"{layer}.f": f})
        for short, name in [
            ("qb", "attention.self.query.bias"),
            ("kb", "attention.self.key.bias"),
            ("vb", "attention.self.value.bias"),
            ("ob", "attention.output.dense.bias"),
            ("ln1_w", "attention.output.LayerNorm.weight"),
            ("ln1_b", "attention.output.LayerNorm.bias"),
            ("ib", "intermediate.dense.bias"),
            ("fb", "output.dense.bias"),
            ("ln2_w", "output.LayerNorm.weight"),
            ("ln2_b", "output.LayerNorm.bias"),
        ]:
            w[f"{layer}.{short}"] = init[p + name]
    flat = {}
    for k, v in w.items():
        if isinstance(v, dict):
            flat[k + "@q"], flat[k + "@scale"] = v["q"], v["scale"]
        else:
            flat[k] = v.astype(np.float32)
    np.savez(out, **flat)


def load_weights(path) -> dict:
    z = dict(np.load(path))
    out = {k: v for k, v in z.items() if "@" not in k}
    for k in [k[:-2] for k in z if k.endswith("@q")]:
        out[k] = z[k + "@q"].astype(np.float32) * z[k + "@scale"]
    return out


def numpy_encode(W: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The same forward pass in numpy (a check of the exported weights, no GPU)."""
    from math import erf, sqrt  # noqa: F401

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w + b

    from scipy.special import erf as verf

    b, n = ids.shape
    x = ln(W["word"][ids] + W["pos"][:n][None] + W["type"][0], W["ln_w"], W["ln_b"])
    bias = (1.0 - mask)[:, None, None, :] * -1e9
    for layer in range(LAYERS):
        g = lambda s: W[f"{layer}.{s}"]  # noqa: E731

        def heads(t):
            return t.reshape(b, n, HEADS, DIM // HEADS).transpose(0, 2, 1, 3)

        q, k, v = heads(x @ g("q") + g("qb")), heads(x @ g("k") + g("kb")), heads(x @ g("v") + g("vb"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(DIM // HEADS) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = ln(x + a.transpose(0, 2, 1, 3).reshape(b, n, DIM) @ g("o") + g("ob"), g("ln1_w"), g("ln1_b"))
        h = x @ g("i") + g("ib")
        h = 0.5 * h * (1 + verf(h / np.sqrt(2)))
        x = ln(x + h @ g("f") + g("fb"), g("ln2_w"), g("ln2_b"))
    m = mask[..., None]
    p = (x * m).sum(1) / m.sum(1)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def padded_batches(encodings, order, size: int):
    """(rows, ids, type_ids, mask) of tokenizer encodings taken in ``order``, ``size`` at a
    time, zero-padded to each batch's longest (the embedder's, and the cross-encoder's pairs)."""
    for s in range(0, len(order), size):
        rows = order[s : s + size]
        ids = np.zeros((len(rows), max(len(encodings[r].ids) for r in rows)), np.int64)
        typ, mask = np.zeros_like(ids), np.zeros_like(ids)
        for j, r in enumerate(rows):
            n = len(encodings[r].ids)
            ids[j, :n], typ[j, :n], mask[j, :n] = encodings[r].ids, encodings[r].type_ids, 1
        yield rows, ids, typ, mask


def by_length(encodings, size: int):
    """``padded_batches`` of the encodings, shortest first (least padding)."""
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    return padded_batches(encodings, order, size)


def torch_encoder(weights: dict, device: str, dtype):
    import torch
    import torch.nn.functional as F

    W = {k: torch.tensor(v.astype(np.float32), device=device, dtype=dtype) for k, v in weights.items()}

    @torch.inference_mode()
    def encode(ids: np.ndarray, mask: np.ndarray, pooled: bool = True) -> np.ndarray:
        ids_t = torch.tensor(ids, device=device)
        m = torch.tensor(mask, device=device, dtype=dtype)
        b, n = ids.shape
        x = W["word"][ids_t] + W["pos"][:n][None] + W["type"][0]
        x = F.layer_norm(x, (DIM,), W["ln_w"], W["ln_b"], 1e-12)
        bias = (1.0 - m)[:, None, None, :] * torch.finfo(dtype).min
        for layer in range(LAYERS):
            g = lambda s: W[f"{layer}.{s}"]  # noqa: E731

            def heads(t):
                return t.view(b, n, HEADS, DIM // HEADS).transpose(1, 2)

            q, k, v = heads(x @ g("q") + g("qb")), heads(x @ g("k") + g("kb")), heads(x @ g("v") + g("vb"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            a = a.transpose(1, 2).reshape(b, n, DIM)
            x = F.layer_norm(x + a @ g("o") + g("ob"), (DIM,), g("ln1_w"), g("ln1_b"), 1e-12)
            h = F.gelu(x @ g("i") + g("ib"))
            x = F.layer_norm(x + h @ g("f") + g("fb"), (DIM,), g("ln2_w"), g("ln2_b"), 1e-12)
        if not pooled:  # the word-piece vectors (``Embedder.embed_tokens``), unit length
            return F.normalize(x.float(), dim=2).cpu().numpy()
        mean = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(mean.float(), dim=1).cpu().numpy()

    return encode


def run(folder: str, out: str):
    import torch
    from tokenizers import Tokenizer

    from curate.classifiers.embedding import MAX_TOKENS, TOKENIZER_PATH, Embedder

    folder, out = Path(folder), Path(out)
    tok = Tokenizer.from_file(str(TOKENIZER_PATH))
    tok.no_padding()  # tokenizer.json pads to 128; batches pad themselves
    tok.enable_truncation(MAX_TOKENS)
    rows = [json.loads(line) for line in (folder / "texts.jsonl").open()]
    speed = [r["text"] for r in rows if r.get("speed")]
    encode = torch_encoder(load_weights(folder / "weights.npz"), "cuda", torch.float16)

    def batches(texts, bs):
        for rws, ids, _, mask in by_length(tok.encode_batch(texts), bs):
            yield rws, ids, mask

    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "dtype": "float16"}
    # agreement with the CPU path (onnxruntime) on a sample
    sample = speed[:64]
    cpu = Embedder(cache_size=0, threads=4).embed(sample)
    gpu = np.zeros_like(cpu)
    for rws, ids, mask in batches(sample, 64):
        gpu[rws] = encode(ids, mask)
    report["cosine_gpu_vs_cpu_min"] = float((cpu * gpu).sum(1).min())
    texts = speed * 8  # 8 passes over the real English documents
    for bs in (128, 512):
        for rws, ids, mask in batches(texts[: bs * 2], bs):
            encode(ids, mask)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        ntok = 0
        for rws, ids, mask in batches(texts, bs):  # includes tokenization on the host
            encode(ids, mask)
            ntok += int(mask.sum())
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        report[f"batch_{bs}"] = {
            "docs": len(texts),
            "seconds": round(dt, 3),
            "docs_per_s": round(len(texts) / dt, 1),
            "tokens_per_s": round(ntok / dt),
        }
        print(report, flush=True)
    cache_rows = [r["text"] for r in rows if not r.get("speed")]
    if cache_rows:
        import os

        e = Embedder(cache_size=10**8, threads=os.cpu_count(), batch_size=64)
        t0 = time.perf_counter()
        e.embed(cache_rows)
        report["cache"] = {
            "texts": len(cache_rows),
            "seconds": round(time.perf_counter() - t0, 1),
            "threads": os.cpu_count(),
        }
        e.save_cache(out / "vectors.npz", shard=20_000)  # files back from the machine: 16 MB each
    (out / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    print(report)


class TorchEmbedder:
    """``embedding.Embedder``'s interface (tokenizer, embed) on the GPU: same tokenizer,
    truncation, mean pooling, normalization and float16 rounding; fp16 arithmetic."""

    def __init__(self, weights_path, batch_size: int = 512):
        import torch
        from tokenizers import Tokenizer

        from curate.classifiers.embedding import MAX_TOKENS, TOKENIZER_PATH

        self.tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.full_tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self.full_tokenizer.no_padding()
        self.full_tokenizer.no_truncation()
        self.encode = torch_encoder(load_weights(weights_path), "cuda", torch.float16)
        self.batch_size = batch_size
        self.stats = {"embedded": 0, "tokens": 0, "token_texts": 0}
        self._token_cache: dict[str, tuple] = {}

    def _batches(self, texts):
        """(rows, ids, mask, lengths) of ``texts`` by length, ``batch_size`` at a time, padded."""
        for rws, ids, _, mask in by_length(self.tokenizer.encode_batch(texts), self.batch_size):
            yield rws, ids, mask, mask.sum(axis=1)

    def embed(self, texts) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        if not texts:
            return out
        for rws, ids, mask, lens in self._batches(texts):
            out[rws] = self.encode(ids, mask)
            self.stats["tokens"] += int(lens.sum())
        self.stats["embedded"] += len(texts)
        return out.astype(np.float16).astype(np.float32)

    def embed_tokens(self, texts) -> list[tuple[np.ndarray, np.ndarray]]:
        """``Embedder.embed_tokens`` on the GPU: per text (word-piece ids, unit vectors), [CLS]
        and [SEP] left out, float16-rounded.  Padded batches: a padded position is masked
        out of attention, so a text's vectors do not depend on its neighbours (up to fp16
        rounding).  Every text is kept (item views recur across thousands of spans)."""
        texts = list(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._token_cache))
        if todo:
            for rws, ids, mask, lens in self._batches(todo):
                hidden = self.encode(ids, mask, pooled=False)
                for j, (r, n) in enumerate(zip(rws, lens)):
                    self._token_cache[todo[r]] = (
                        ids[j, 1 : n - 1].copy(),
                        hidden[j, 1 : n - 1].astype(np.float16).astype(np.float32),
                    )
            self.stats["token_texts"] += len(todo)
        return [self._token_cache[t] for t in texts]


def candidates(folder: str, out: str):
    """The paraphrase stage's spans + nearest items and SemDeDup's document vectors for
    the evaluation's cases (exported by ``semantic_eval.py --export``), on the GPU."""
    from curate.classifiers import semdedup as sd
    from curate.classifiers.paraphrase import Item, ParaphraseIndex

    folder, out = Path(folder), Path(out)
    emb = TorchEmbedder(folder / "weights.npz")
    t0 = time.perf_counter()
    import gzip

    items = [Item(**x) for x in json.loads(gzip.open(folder / "items.json.gz", "rt").read())]
    index = ParaphraseIndex(items, embedder=emb)
    report = {"index_seconds": round(time.perf_counter() - t0, 2)}
    cases = [json.loads(line) for line in gzip.open(folder / "cases.jsonl.gz", "rt")]
    t0 = time.perf_counter()
    rows = []
    for s in range(0, len(cases), 500):
        part = cases[s : s + 500]
        # spans and cosines only: semantic_eval.py computes the other features (lexical, and the
        # token alignment for the floors it tries) on the CPU, with the stage's own code
        for c in index.candidates([x["text"] for x in part], token_floor=float("inf")):
            rows.append([s + c.doc, c.item, c.span[0], c.span[1], c.similarity])
    report["candidates_seconds"] = round(time.perf_counter() - t0, 2)
    report["span_tokens"] = emb.stats["tokens"]
    (out / "candidates.json").write_text(json.dumps(rows))
    docs = [json.loads(line) for line in gzip.open(folder / "docs.jsonl.gz", "rt")]
    t0 = time.perf_counter()
    vecs = sd.embed_documents([d["text"] for d in docs], emb)
    report["docvec_seconds"] = round(time.perf_counter() - t0, 2)
    np.savez(out / "docvecs.npz", ids=np.array([d["id"] for d in docs]), vectors=vecs.astype(np.float16))
    (out / "device_candidates.json").write_text(json.dumps(report, indent=1) + "\n")
    print(report)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    elif sys.argv[1] == "candidates":
        candidates(sys.argv[2], sys.argv[3])
    else:
        run(sys.argv[2], sys.argv[3])
