"""The stage registry: a stage is one self-contained unit, found and added in one place.

A stage module (``transforms/<stage>.py``) holds everything about its stage:

* its typed config, a ``StageConfig`` (pydantic) whose fields carry their
  defaults and the reasoning behind them, validated at load time;
* its ``beam.PTransform`` (a ``transforms.stage.Stage``), built from that
  config object by the spec's ``build`` (no dicts, no positional lists);
* the stats it declares (``StatKind`` objects: how its counters become its
  entry in ``funnel.json`` and how that entry renders in ``funnel.md`` and
  ``report.html``);
* optionally what it publishes after the run (``publish``: e.g. the mixing
  stage's ``mixture.json``).

and ends with ``register(StageSpec(...))``.  The pipeline assembles the chain
from the registry in ``order``; the funnel's conservation accounting iterates
the same registry.  Every module of this package is imported by ``load()``, so
a new stage is one new file.  Tests register a stage for a block with
``registered(spec)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict
from typing_extensions import Annotated

from curate.transforms import render
from curate.transforms.stage import Columns, Stage, StageResult, split_by_mask

# ``languages: en`` means ``[en]``: a bare string where a list of strings is expected.
StrList = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys, wrong types and non-finite numbers (YAML's
    ``.inf``/``.nan``, which no setting means) are errors, never coerced.

    A cross-field check raises ``ValueError("@field: message")`` to name the key it is about."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a stage may know about the run when it is built (on the driver)."""

    columns: Columns
    input_rows: int = 0
    staging: str = ""
    tokens_per_char: float = 0.26


class StatKind:
    """A stat a stage declares: made where the work happens, folded and rendered in one place.

    In the pipeline the stage emits ``(stat.key(stage, group), (docs, chars))``
    pairs, summed per key by the pipeline; on the driver ``funnel`` folds the
    stage's sums into keys of its funnel entry, and ``markdown``/``html`` render
    that entry.  ``markdown_order``/``html_order`` place the sections among those
    of other stages."""

    kind: ClassVar[str] = ""
    markdown_order: ClassVar[int] = 100
    html_order: ClassVar[int] = 100

    def key(self, stage: str, group: str = "", kind: str | None = None) -> tuple[str, str, str]:
        return (stage, kind or self.kind, group)

    def sizes(self, sums: dict[tuple[str, str], tuple[int, int]], tokens_per_char: float) -> dict[str, dict]:
        """This kind's counters by group, as funnel sizes (docs, chars, estimated tokens)."""
        return {
            group: render.size(docs, chars, tokens_per_char)
            for (kind, group), (docs, chars) in sorted(sums.items())
            if kind == self.kind
        }

    def funnel(self, sums: dict[tuple[str, str], tuple[int, int]], entry: dict, tokens_per_char: float) -> dict:
        """``sums``: (kind, group) -> (docs, chars) of every counter of one stage; ``entry``:
        the stage's funnel entry so far (in, kept, rejected_by_reason ...).  Returns keys to add."""
        return {}

    def markdown(self, entry: dict, funnel: dict) -> list[str]:
        return []

    def html(self, entry: dict, funnel: dict, samples: dict) -> list[str]:
        return []


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of the chain, as the registry knows it.

    ``key``: its section under ``stages:`` in the config.  ``build(config, context)``
    returns the funnel stages it contributes (usually one; the quality config gives
    two cuts).  ``slots``: (slot, name shown when not run) of those funnel stages;
    empty: one slot, named ``key``.  ``always``: runs whatever the config
    (input_check).  ``publish(entry, funnel, read, write)``: after the run, before
    publishing, may add top-level keys to the funnel and write JSON files into
    staging (``read(name)``/``write(name, payload)``).  ``notes(config)``: warnings the
    config itself warrants, said on the console before the run."""

    key: str
    config: type[StageConfig]
    build: Callable[[Any, BuildContext], list[Stage]]
    order: float
    slots: tuple[tuple[str, str], ...] = ()
    stats: tuple[StatKind, ...] = ()
    always: bool = False
    publish: Callable | None = None
    notes: Callable[[Any], list[str]] | None = None

    def __post_init__(self):
        if not self.slots:
            object.__setattr__(self, "slots", ((self.key, self.key),))


_REGISTRY: dict[str, StageSpec] = {}
_LOADED = False


def register(spec: StageSpec) -> StageSpec:
    if spec.key in _REGISTRY and _REGISTRY[spec.key] is not spec:
        raise ValueError(f"stage {spec.key!r} is registered twice")
    _REGISTRY[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    _REGISTRY.pop(key, None)


@contextlib.contextmanager
def registered(spec: StageSpec):
    """Register ``spec`` for the duration of a block (tests, notebooks)."""
    load()
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.key)


def load() -> None:
    """Import every module of this package once: each stage module registers itself."""
    global _LOADED
    if _LOADED:
        return
    import curate.transforms as package

    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        importlib.import_module(f"curate.transforms.{module}")
    _LOADED = True


def specs(order: list[str] | None = None) -> list[StageSpec]:
    """The registered stages in chain order: each spec's ``order``, or the keys of ``order``
    first (a recipe's own order, e.g. FineWeb's filters before its dedup) after the stages
    that always run, then the others in registry order."""
    load()
    ranked = sorted(_REGISTRY.values(), key=lambda s: (s.order, s.key))
    if not order:
        return ranked
    position = {key: i for i, key in enumerate(order)}
    return sorted(ranked, key=lambda s: (not s.always, s.key not in position, position.get(s.key, 0)))


# -- the common case: a document filter from a pure function ---------------------------------------


class FilterStage(Stage):
    """A stage from a pure function ``reasons(texts, config) -> [reason or None per document]``.

    Each distinct reason is a reject reason (and a counter in the funnel); the
    function sees a batch's text column (an Arrow string array) and the stage's
    typed config, and is called once per batch."""

    def __init__(self, columns: Columns, name: str, config: StageConfig, reasons: Callable):
        self.name = name
        super().__init__(columns)
        self.config, self.reasons = config, reasons

    def expand(self, batches) -> StageResult:
        text_col, config, reasons = self.columns.text, self.config, self.reasons

        def decide(batch):
            found = list(reasons(batch.column(text_col), config))
            keep = [r is None for r in found]
            return keep, [r for r in found if r is not None], {}, {}

        return split_by_mask(batches, self.name, decide)


def filter_stage(
    key: str, config: type[StageConfig], reasons: Callable, order: float, stats: tuple[StatKind, ...] = ()
) -> StageSpec:
    """A ``StageSpec`` for a ``FilterStage``: config key, funnel slot and name are all ``key``."""

    def build(cfg: StageConfig, ctx: BuildContext) -> list[Stage]:
        return [FilterStage(ctx.columns, key, cfg, reasons)]

    return StageSpec(key=key, config=config, build=build, order=order, stats=stats)
