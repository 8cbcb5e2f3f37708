"""Start-up time of light commands: wall seconds of `contrafuse COMMAND` in fresh interpreters.

    python benchmarks/startup.py [--repeat 5]

Prints the median over ``--repeat`` runs for each command, and beside it the median of a bare
``python -c "import torch"`` measured in the same run (the cost the light commands no longer pay).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["models"], ["fuse", "--help"], ["align", "--help"], ["eval", "--help"], ["bench", "--help"])


def seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = [(" ".join(["contrafuse", *c]), ["-m", "contrafuse.cli.main", *c]) for c in COMMANDS]
    cases.append(("python -c 'import torch'", ["-c", "import torch"]))
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(args.repeat):  # interleaved, so that a busy moment touches every case alike
        for label, argv in cases:
            times[label].append(seconds(argv))
    for label, values in times.items():
        print(f"{label:32s} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
