"""One module per benchmark suite; each exposes `TITLE` and `run(ctx: Context) -> SuiteResult`."""
