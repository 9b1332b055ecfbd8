from curate.pipelines.cli import main

# guarded: spawned worker processes (multi-process DirectRunner, dask) re-import the main module
if __name__ == "__main__":
    raise SystemExit(main())
