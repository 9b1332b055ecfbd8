"""Stage ``textbook``: the reference recipe's textbook heuristics (off by default).

Length, structure markers and, where the text has fenced Python, code that
parses; each failing check is a reason (``classifiers.textbook``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from curate.classifiers.textbook import textbook_reasons
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, register
from curate.transforms.stage import Stage, StageResult, split_by_mask


class TextbookHeuristics(Stage):
    name = "textbook"

    def __init__(self, columns, cfg: "TextbookConfig"):
        super().__init__(columns)
        self.cfg = cfg

    def expand(self, batches) -> StageResult:
        text_col, args = self.columns.text, (self.cfg.min_words, self.cfg.min_markers, self.cfg.check_code)

        def decide(batch):
            reasons = np.asarray(textbook_reasons(batch.column(text_col), *args), dtype=object)
            keep = reasons == ""
            return keep, [str(r) for r in reasons[~keep]], {}, {}

        return split_by_mask(batches, self.name, decide)


class TextbookConfig(StageConfig):
    """The reference recipe's textbook heuristics (off by default)."""

    enabled: bool = False
    min_words: int = Field(100, ge=0)
    min_markers: int = Field(2, ge=0)
    check_code: bool = True  # every fenced Python block must parse (ast.parse; never executed)


def build_textbook(cfg: TextbookConfig, ctx: BuildContext) -> list[Stage]:
    return [TextbookHeuristics(ctx.columns, cfg)]


register(StageSpec(key="textbook", config=TextbookConfig, build=build_textbook, order=60))
