"""Bench 3: command latency of the commands that need no model, against ``python -c pass``.

Each command runs as a user runs it (the ``builder`` console script of this environment) in a
fresh process; wall time and CPU time (user + system) of the whole process, median of ``--runs``
after one warm-up. Bytecode is cached as in a normal install (``PYTHONPYCACHEPREFIX`` under
bench/_data, so nothing is written into the source tree; ``PYTHONDONTWRITEBYTECODE`` is unset).
A second run of each command checks that it never imports TensorFlow or Keras.

    python bench/bench_cli_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

GOAL_SECONDS = 0.5
BUILDER = str(Path(sys.executable).parent / "builder")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "builder --help": [BUILDER, "--help"],
    "builder validate configs/salary_linear.yaml": [
        BUILDER,
        "validate",
        "configs/salary_linear.yaml",
    ],
    "builder schema": [BUILDER, "schema"],
}
# Runs the CLI in-process, then reports whether TensorFlow or Keras got imported. main() is given
# its arguments, so it ends with SystemExit rather than the console script's os._exit.
PROBE = (
    "import sys\n"
    "from builder.cli_fast import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
    "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
)


def _env() -> dict[str, str]:
    env = _common.child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(_common.DATA / "pycache")
    return env


def _measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=_common.ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _imports_tensorflow(command: list[str], env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *command[1:]],
        env=env,
        cwd=_common.ROOT,
        capture_output=True,
        text=True,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    env = _env()
    (_common.DATA / "pycache").mkdir(parents=True, exist_ok=True)
    for command in COMMANDS.values():  # warm-up: bytecode cache, page cache
        _measure(command, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():  # interleaved, so load hits every command alike
            samples[name].append(_measure(command, env))
    baseline = _common.median([w for w, _ in samples["python -c pass"]])
    summary = {}
    for name, values in samples.items():
        wall = _common.median([w for w, _ in values])
        summary[name] = {
            "median_wall_seconds": wall,
            "median_cpu_seconds": _common.median([c for _, c in values]),
            "ratio_to_python": wall / baseline,
            "imports": []
            if name.startswith("python")
            else _imports_tensorflow(COMMANDS[name], env),
            "under_goal": wall < GOAL_SECONDS,
        }
    path = _common.write_results(
        "cli_latency",
        {
            "goal": f"each command under {GOAL_SECONDS} s, none imports TensorFlow",
            "runs": args.runs,
            "bytecode": "cached (PYTHONPYCACHEPREFIX=bench/_data/pycache), after one warm-up",
            "summary": summary,
            "samples": {k: [list(v) for v in vals] for k, vals in samples.items()},
            "load_average_at_start": os.getloadavg(),
        },
    )
    rows = [
        [
            f"`{name}`",
            f"{s['median_wall_seconds']:.3f} s",
            f"{s['median_cpu_seconds']:.3f} s",
            f"{s['ratio_to_python']:.1f}x",
            ", ".join(s["imports"]) or "no",
        ]
        for name, s in summary.items()
    ]
    print(_common.table(["command", "wall (median)", "CPU", "vs python", "imports TF"], rows))
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
