"""Typed configuration loaded from YAML (``yaml.safe_load`` only).

One pydantic model per section: the run-level sections here (input, output,
runner) and each stage's own model in its module (``transforms/<stage>.py``),
collected under ``stages`` from the stage registry, so a stage's config is found
where the stage is.  An unknown key, a wrong type (nothing is coerced: ``"yes"``
is not ``true``) or an out-of-range value raises ``ConfigError`` naming the key
path (``stages.exact_dedup.enabled``) and the file.
"""

from __future__ import annotations

import functools
import typing
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from curate.transforms import registry


class ConfigError(Exception):
    pass


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class InputConfig(Section):
    # Globs, paths or folders of Parquet shards (any FileSystems scheme: local, gs://,
    # s3://, hdfs://).  Empty means the bundled sample corpus.
    paths: registry.StrList = Field(default_factory=list)
    id_column: str = Field("id", min_length=1)
    text_column: str = Field("text", min_length=1)
    # Rows per Arrow record batch read from a shard: big enough to amortize the
    # ~1 us per-element Beam cost and batch model calls, small enough (~2 MB of
    # 1 KB documents) to keep worker memory flat.
    batch_size: int = Field(2048, ge=1)
    # Optional {glob: source name}: shards matching a glob get that source (a
    # `source` column is added) when the input has no source column.
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self):
        if self.id_column == self.text_column:
            raise ValueError("@text_column: must differ from id_column")
        return self


SHARD_ROWS = 25_000  # input rows' worth of documents per output shard, when the counts are null


class OutputConfig(Section):
    """Kept documents and each stage's rejects are written as Parquet shards, rows
    assigned by a hash of the id (deterministic on any runner and worker count).

    A shard is sorted and written by one worker from one table in memory, and
    the shards of a folder are the only parallelism its write has.  ``null``
    sizes the count from the input's row count (known before the run, so the
    layout is the same on any runner): kept ``max(4, ceil(rows / 25,000))``,
    rejects ``max(1, ceil(rows / 25,000))`` per stage.  Either folder then holds
    at most 25k input rows' worth of documents per shard (~60 MB of text at
    web-page sizes, if a stage rejects or keeps every one), so the largest table
    a worker builds to write does not grow with the corpus: a worker's peak
    memory stays that of the stages' batches.  (With a fixed 4 kept shards, a
    worker's peak at 1M documents was the write of one kept shard, 2.2x its peak
    at 100k.)  Fewer, larger files: set the counts; a worker then holds a whole
    shard's rows (sorted, so the bytes are the same on any runner).
    """

    num_shards: int | None = Field(None, ge=1, le=1_000_000)
    reject_shards: int | None = Field(None, ge=1, le=1_000_000)

    def kept_shards(self, input_rows: int) -> int:
        return self.num_shards or max(4, -(-input_rows // SHARD_ROWS))

    def rejects_shards(self, input_rows: int) -> int:
        return self.reject_shards or max(1, -(-input_rows // SHARD_ROWS))

    compression: typing.Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = "zstd"


class RunnerConfig(Section):
    """Beam pipeline options, as in `--key=value` (lists repeat the flag, true is a bare flag).

    Options given on the command line after the curate options win over these.
    With no runner set, the DirectRunner runs in-process for small inputs and in
    multi-processing mode with one worker per core from ``multiprocess_min_rows``.
    """

    options: dict[str, typing.Any] = Field(default_factory=dict)
    # DirectRunner with no mode given: input rows from which one worker process per
    # core is faster than one in-process worker (below it, starting the workers and
    # their models costs what the second core saves).  Measured on 2 cores with
    # benchmarks/scaleout_eval.py: 1.02x at 20k rows, 1.25x at 50k, 1.36x at 100k.
    multiprocess_min_rows: int = Field(30_000, ge=0)

    @model_validator(mode="after")
    def _options(self):
        for key, value in self.options.items():
            if not isinstance(value, (str, int, float, bool, list)) or key.startswith("-"):
                raise ValueError(f"@options.{key}: must be a string, number, true/false or list, key without dashes")
        return self

    def as_args(self, only: str | None = None) -> list[str]:
        """The options as Beam flags; ``only``: one key's."""
        args = []
        for key, value in self.options.items():
            if only is not None and key != only:
                continue
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is True:
                    args.append(f"--{key}")
                elif v is not False:
                    args.append(f"--{key}={v}")
        return args


def _check_order(cfg):
    if cfg.order is not None:
        known = [key for key in type(cfg.stages).model_fields]
        for i, key in enumerate(cfg.order):
            if key not in known:
                raise ValueError(f"@order[{i}]: {key!r} is not a stage (stages: {', '.join(known)})")
        if len(set(cfg.order)) != len(cfg.order):
            raise ValueError("@order: a stage is listed twice")
    return cfg


@functools.lru_cache(maxsize=None)
def _config_model(stage_keys: tuple[str, ...]) -> type[BaseModel]:
    """The whole config's model for the registered stages (one per set of stages: tests add some)."""
    by_key = {spec.key: spec for spec in registry.specs()}
    stages = create_model(
        "StagesConfig",
        __base__=Section,
        **{key: (by_key[key].config, Field(default_factory=by_key[key].config)) for key in stage_keys},
    )
    return create_model(
        "Config",
        __base__=Section,
        input=(InputConfig, Field(default_factory=InputConfig)),
        output=(OutputConfig, Field(default_factory=OutputConfig)),
        stages=(stages, Field(default_factory=stages)),
        runner=(RunnerConfig, Field(default_factory=RunnerConfig)),
        # Estimated tokens per character (English BPE ~0.26); used for token counts
        # in the funnel and for token budgets.
        tokens_per_char=(float, Field(0.26, gt=0, le=4)),
        # Stage keys in the order they run (null: the registry's, the Phi recipe's:
        # dedup, language, quality, decontamination, mixing).  Listed stages run in this
        # order, first; stages not listed follow in the registry's order.
        order=(typing.Optional[registry.StrList], None),
        __validators__={"_order": model_validator(mode="after")(_check_order)},
    )


def config_model() -> type[BaseModel]:
    return _config_model(tuple(spec.key for spec in registry.specs() if not spec.always))


Config = typing.Any  # an instance of ``config_model()``: typed per stage, see each stage's config


# -- pydantic's errors, said as this project says them: "config key KEY: message" ------------------


def _field_info(loc: tuple):
    """The FieldInfo at ``loc`` in the config model (None where the path leaves the models)."""
    model, info = config_model(), None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        info = fields[part]
        model = _model_of(info.annotation)
    return info


def _model_of(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _bounds(info) -> str | None:
    lo = hi = None
    for m in getattr(info, "metadata", []):
        for name, bracket in (("ge", "["), ("gt", "(")):
            if getattr(m, name, None) is not None:
                lo = (bracket, getattr(m, name))
        for name, bracket in (("le", "]"), ("lt", ")")):
            if getattr(m, name, None) is not None:
                hi = (bracket, getattr(m, name))
    if lo and hi:
        return f"must be in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f"must be {'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f"must be {'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
    return None


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
}


def _message(err: dict) -> tuple[tuple, str]:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    # a value inside a mapping of typed values (weights.web) or a list item
    if kind == "extra_forbidden":
        parent = _field_info(loc[:-1])
        model = _model_of(parent.annotation) if parent is not None else (config_model() if len(loc) == 1 else None)
        allowed = ", ".join(sorted(model.model_fields)) if model is not None else ""
        return loc, f"unknown key (allowed here: {allowed})" if allowed else "unknown key"
    if kind in _TYPE_WORDS:
        return loc, f"expected {_TYPE_WORDS[kind]}, got {value!r}"
    if kind == "list_type":
        return loc, f"expected a list, got {type(value).__name__}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping, got {type(value).__name__}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return loc, _bounds(_field_info(loc)) or err["msg"]
    if kind == "literal_error":
        return loc, f"must be {err['ctx']['expected']}"
    if kind == "too_short":
        return loc, "must not be empty"
    if kind == "missing":
        return loc, "required"
    if kind == "value_error":
        message = str(err["ctx"]["error"])
        if message.startswith("@"):  # a cross-field check names its key
            field, _, message = message[1:].partition(": ")
            loc = loc + tuple(field.split("."))
        return loc, message
    return loc, err["msg"]


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def config_from_dict(data: dict | None) -> Config:
    """Validate a config mapping (no layering: keys not given take the models' defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key <root>: expected a mapping, got {type(data).__name__}")
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        loc, message = _message(exc.errors()[0])
        raise ConfigError(f"config key {_key(loc)}: {message}") from None


# Maps that merge key by key when configs are layered (each key is an independent
# option); every other mapping (weights, source_map, input.sources) and every
# list is replaced whole by a later layer, as a user writing one expects.
MERGED_MAPS = {("runner", "options")}


def _merge(model, base: dict, over: dict, at: tuple = ()) -> dict:
    """``over`` layered on ``base``: sections (models) merge key by key, later wins."""
    fields = getattr(model, "model_fields", {})
    out = dict(base)
    for key, value in over.items():
        sub = _model_of(fields[key].annotation) if key in fields else None
        if sub is not None and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(sub, out[key], value, at + (key,))
        elif at + (key,) in MERGED_MAPS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no object construction) that refuses a key given twice in one
    mapping: plain YAML keeps the last silently, so ``enabled: true`` above ``enabled: false``
    would quietly turn a stage off."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


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
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: never constructs objects
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
        data = _merge(config_model(), data, layer)
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
    return cfg.model_dump(mode="python")
