"""`conveyor bench`: an end-to-end benchmark on real processes, measured from PostgreSQL."""

# Here rather than in `tasks`: importing `tasks` builds an app from the environment, which
# the CLI must not do just to list its commands.
QUEUE = "bench"
TASK = "conveyor.bench.noop"
