"""Entry point: ``<venv>/bin/python adapters/launch.py <adapter_module> [options]``.

The adapter is imported under its own module name (not ``__main__``) so that task names
and import paths match what the worker processes see.
"""

from __future__ import annotations

import sys

import _common

if __name__ == "__main__":
    if len(sys.argv) < 2 or not sys.argv[1].endswith("_peer"):
        raise SystemExit("usage: launch.py <name>_peer [--mode ...] [--count N] ...")
    module = sys.argv.pop(1)
    _common.main(module)
