from curate.pipelines.cli import main

raise SystemExit(main())
