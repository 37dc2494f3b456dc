"""The test command scripts/mutation.py gives Cosmic Ray: run one mutant's test stages.

    python scripts/mutation_runner.py RUNNER.json

RUNNER.json (written by scripts/mutation.py) names the mutated module, a pristine copy of
it, the pytest argument lists of the stages and, optionally, per function a different
stage order. The runner finds the function the mutant is in (the first line that differs
from the pristine copy, mapped with ``ast``), picks that function's order or the default
one, and runs the stages with pytest until one fails (exit 1: killed) or all pass (exit 0:
survived). Every mutant runs the same tests; only the order changes, so that e.g. a mutant
of the typed entry-hash writer meets the randomised test that catches it before the slow
identifier tests, and a mutant of a validator the other way round.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path


def _function_at(source: str, line: int) -> str | None:
    best = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno <= line <= node.end_lineno:
            if best is None or node.lineno > best.lineno:
                best = node
    return best.name if best else None


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    pristine = Path(config["pristine"]).read_text().splitlines()
    mutated = Path(config["module"]).read_text().splitlines()
    line = next((k + 1 for k, (a, b) in enumerate(zip(pristine, mutated)) if a != b), None)
    function = _function_at("\n".join(pristine), line) if line else None
    order = config.get("order", {}).get(function or "", list(range(len(config["stages"]))))
    for index in order:
        if config["stages"][index] and subprocess.run([sys.executable, "-m", "pytest", *config["pytest_args"], *config["stages"][index]]).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
