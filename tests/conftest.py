"""Shared fixtures: real data from ../shared (skipped with a reason when absent)
and helpers to run the pipeline and read what it wrote."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).parent / "curate")  # the installed console command
SHARED = Path(os.environ.get("CURATE_SHARED", REPO.parent / "shared")) / "data"
REAL_DOCS = SHARED / "real" / "docs.parquet"
BENCHMARKS = SHARED / "benchmarks"


# The real documents carry a gold `lang` column: the language stage writes its
# prediction under other names so both can be compared.
REAL_DOCS_CONFIG = {"stages": {"language": {"output_column": "lid_lang", "score_column": "lid_score"}}}


@pytest.fixture(scope="session")
def real_docs_path() -> Path:
    if not REAL_DOCS.is_file():
        pytest.skip(f"real documents not found at {REAL_DOCS} (../shared is present in CI, not in a user's clone)")
    return REAL_DOCS


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark test sets not found at {BENCHMARKS} (../shared is present in CI only)")
    return BENCHMARKS


def only_stages(*names: str, **settings) -> dict:
    """A config dict enabling only the named stages (input_check always runs).

    ``settings`` maps a stage name to extra keys for it.
    """
    from curate.transforms import registry

    stages = {}
    for spec in registry.specs():
        if not spec.always:
            stages[spec.key] = {"enabled": spec.key in names, **settings.get(spec.key, {})}
    return {"stages": stages}


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def read_dir(path: Path) -> pa.Table | None:
    files = sorted(Path(path).glob("*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


def read_rejects(output: Path) -> dict[str, pa.Table]:
    root = Path(output) / "rejects"
    if not root.is_dir():
        return {}
    return {d.name: read_dir(d) for d in sorted(root.iterdir()) if d.is_dir()}


def run_pipeline(inputs, output: Path, config: dict | None = None, beam_args=None):
    from curate.pipelines import build
    from curate.pipelines.config import config_from_dict

    cfg = config_from_dict(config or {})
    return build.run(cfg, str(output), input_paths=[str(i) for i in inputs], beam_args=beam_args, log=lambda m: None)


def keep_beam_tempdir_in(p, tmp_path: Path) -> None:
    """For a pipeline that is built but never run: Beam removes the local temp folder it
    makes for every Pipeline only in ``run()``, so put it under ``tmp_path``."""
    import shutil

    shutil.rmtree(p.local_tempdir, ignore_errors=True)
    p.local_tempdir = str(tmp_path / "beam-local")
