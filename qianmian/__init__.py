"""The `recsys` command line: one entry point wiring the commands of every package."""
