"""`python -m conveyor`: the `conveyor` command, for when the script is not on PATH."""

from conveyor.cli import main

# The guard matters: the worker supervisor spawns children that import this module again.
if __name__ == "__main__":
    main(prog_name="conveyor")
