"""Loaders turning benchmark files into items: (item_id, text a model is tested on).

Each format keeps the parts that identify an item -- the question and its gold
answer (and the n-grams spanning both, since they are joined), not only the
prompt, as datatrove's decontamination does.

Formats: gsm8k (jsonl: question, answer; calculator annotations <<...>> removed),
humaneval (jsonl or jsonl.gz: prompt, canonical_solution, test), mmlu (csv
without header: question, A, B, C, D, answer letter; a folder of such files or
one file), arc (jsonl: question.stem, question.choices[].text, answerKey),
hellaswag (jsonl: ctx, endings, label), mbpp (jsonl: text, code, test_list),
and generic (jsonl, csv with header, or Parquet; ``fields`` names the columns
to join; ``id_field`` optional).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

FORMATS = ("gsm8k", "humaneval", "mmlu", "arc", "hellaswag", "mbpp", "generic")
_GSM8K_CALC = re.compile(r"<<[^>]*>>")


class BenchmarkFormatError(Exception):
    pass


class LocalFiles:
    """How the loaders reach files: local paths and globs.  No Beam here (this layer is
    pure); the Beam stages pass ``transforms.io.BeamFiles``, which reads through Beam's
    FileSystems and so reaches gs://, s3:// and the other schemes a runner has."""

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def match(self, pattern: str) -> list[str]:
        import glob

        return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern] * Path(pattern).exists()


LOCAL = LocalFiles()


def _open_text(path: str, files=None):
    raw = (files or LOCAL).read(path)
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def _jsonl(path: str, files=None):
    for line_no, line in enumerate(_open_text(path, files).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise BenchmarkFormatError(f"{path}: line {line_no} is not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise BenchmarkFormatError(f"{path}: line {line_no} is not a JSON object")
        yield line_no, record


def _need(record: dict, keys, path: str, line_no: int, fmt: str):
    missing = [k for k in keys if k not in record]
    if missing:
        raise BenchmarkFormatError(f"{path}: line {line_no}: {fmt} item lacks field(s) {missing}")


def _files(path: str, suffixes, files=None) -> list[str]:
    p = Path(path)
    if "://" not in path and p.is_dir():
        found = sorted(str(f) for f in p.iterdir() if f.name.endswith(suffixes))
    else:
        found = sorted((files or LOCAL).match(path))
    if not found:
        raise BenchmarkFormatError(f"{path}: no benchmark files found")
    return found


def load_items(
    fmt: str, path: str, fields: list[str] | None = None, id_field: str | None = None, files: LocalFiles | None = None
):
    """Yield (item_id as a string, text) for every item of a benchmark file (or folder, for mmlu);
    ``files``: how to read it (default: local paths, ``LocalFiles``)."""
    for item_id, text in _load_items(fmt, path, fields, id_field, files):
        yield str(item_id), text


def _load_items(fmt: str, path: str, fields: list[str] | None, id_field: str | None, files=None):
    if fmt not in FORMATS:
        raise BenchmarkFormatError(f"unknown benchmark format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "gsm8k":
        for n, r in _jsonl(path, files):
            _need(r, ["question", "answer"], path, n, fmt)
            yield f"gsm8k/{n}", r["question"] + "\n" + _GSM8K_CALC.sub("", r["answer"])
    elif fmt == "humaneval":
        for n, r in _jsonl(path, files):
            _need(r, ["prompt", "canonical_solution"], path, n, fmt)
            yield r.get("task_id", f"humaneval/{n}"), r["prompt"] + r["canonical_solution"] + "\n" + r.get("test", "")
    elif fmt == "mbpp":
        for n, r in _jsonl(path, files):
            _need(r, ["text", "code"], path, n, fmt)
            yield f"mbpp/{r.get('task_id', n)}", r["text"] + "\n" + r["code"] + "\n" + "\n".join(r.get("test_list", []))
    elif fmt == "arc":
        for n, r in _jsonl(path, files):
            _need(r, ["question"], path, n, fmt)
            q = r["question"]
            if not isinstance(q, dict) or "stem" not in q:
                raise BenchmarkFormatError(f"{path}: line {n}: arc item needs question.stem")
            choices = " ".join(c.get("text", "") for c in q.get("choices", []))
            yield r.get("id", f"arc/{n}"), q["stem"] + "\n" + choices
    elif fmt == "hellaswag":
        for n, r in _jsonl(path, files):
            _need(r, ["ctx", "endings"], path, n, fmt)
            label = r.get("label")
            gold = r["endings"][int(label)] if label not in (None, "") else " ".join(r["endings"])
            yield r.get("ind", f"hellaswag/{n}"), r["ctx"] + " " + gold
    elif fmt == "mmlu":
        for file in _files(path, (".csv",), files):
            subject = Path(file).name.removesuffix("_test.csv").removesuffix(".csv")
            for n, row in enumerate(csv.reader(io.StringIO(_open_text(file, files))), 1):
                if len(row) != 6:
                    raise BenchmarkFormatError(
                        f"{file}: row {n}: MMLU rows have 6 fields (question, A, B, C, D, answer), found {{len(row)}}"
                    )
                yield f"mmlu/{subject}/{n}", "\n".join(row[:5])
    else:  # generic
        if not fields:
            raise BenchmarkFormatError(f"{path}: the generic format needs `fields` (columns to join)")
        yield from _generic(path, fields, id_field, files)


def _generic(path: str, fields: list[str], id_field: str | None, files=None):
    def item(n, record):
        missing = [f for f in fields if f not in record]
        if missing:
            raise BenchmarkFormatError(f"{path}: row {n}: fields {missing} not found")
        item_id = str(record[id_field]) if id_field and id_field in record else f"{Path(path).name}/{n}"
        return item_id, "\n".join(str(record[f]) for f in fields if record[f] is not None)

    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        for n, record in enumerate(pq.read_table(path).to_pylist(), 1):
            yield item(n, record)
    elif path.endswith(".csv"):
        for n, record in enumerate(csv.DictReader(io.StringIO(_open_text(path, files))), 1):
            yield item(n, record)
    else:
        for n, record in _jsonl(path, files):
            yield item(n, record)
