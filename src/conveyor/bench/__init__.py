"""`conveyor bench`: an end-to-end benchmark on real processes, measured from PostgreSQL."""
