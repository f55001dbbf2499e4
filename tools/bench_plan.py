"""`make bench-plan`: how long the offline plan takes against importing its libraries alone.

    python -m tools.bench_plan [--runs 5] [--stack prod]

Runs, alternately and `--runs` times each (after one unmeasured run of each), the command `make plan
STACK=<stack> FORMAT=json` runs (`python -m tools.plan --stack <stack> --format json`) and a Python
process that imports the plan's libraries and exits; prints the median wall time of each, their ratio,
and the same for CPU time (user + system), which moves less when other work shares the machine.

"Its libraries" are the installed packages' modules that a plan run of the stack loads, found by running
it once: `import pulumi_aws` or `import pydantic` alone loads almost nothing (both load their modules on
first use), so a baseline of the top-level packages would leave out library code the plan cannot run
without and charge it to the program.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5
# Runs the plan in this process with its output discarded, then prints the installed packages' modules it
# loaded, in the order they were loaded (sys.modules keeps it), one per line.
_LOADED_LIBRARY_MODULES = """
import contextlib, io, runpy, sys
sys.argv = ["tools.plan", "--stack", STACK, "--format", "json"]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    runpy.run_module("tools.plan", run_name="__main__")
for name, module in list(sys.modules.items()):
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if origin.startswith(SITE_PACKAGES) and not name.startswith("_"):
        print(name)
"""


@dataclass
class Timings:
    label: str
    command: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, env: dict[str, str]) -> tuple[float, float]:
        """One run: wall and CPU seconds (user + system) of the process."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            self.command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(self.command)} exited with {result.returncode}: {result.stderr.strip()}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def measure(self, env: dict[str, str]) -> None:
        wall, cpu = self.run(env)
        self.wall.append(wall)
        self.cpu.append(cpu)


def loaded_library_modules(stack: str, env: dict[str, str], python: str = sys.executable) -> list[str]:
    """The installed packages' modules a plan run of `stack` loads, in their loading order."""
    site_packages = tuple(sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}))
    code = f"STACK = {stack!r}\nSITE_PACKAGES = {site_packages!r}\n{_LOADED_LIBRARY_MODULES}"
    result = subprocess.run([python, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the plan of {stack} failed: {result.stderr.strip()}")
    return result.stdout.split()


def commands(stack: str, modules: Sequence[str], python: str = sys.executable) -> tuple[Timings, Timings]:
    plan = Timings("plan", [python, "-m", "tools.plan", "--stack", stack, "--format", "json"])
    libraries = Timings("libraries", [python, "-c", f"import {', '.join(modules)}"])
    return plan, libraries


def benchmark(runs: int, stack: str) -> tuple[Timings, Timings]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plan, libraries = commands(stack, loaded_library_modules(stack, env))
    plan.run(env)  # unmeasured: file caches warm, and a failing plan fails here
    libraries.run(env)
    for _ in range(runs):  # alternately, so that a burst of other work hits both alike
        plan.measure(env)
        libraries.measure(env)
    return plan, libraries


def report(plan: Timings, libraries: Timings) -> list[str]:
    plan_wall, libraries_wall = statistics.median(plan.wall), statistics.median(libraries.wall)
    plan_cpu, libraries_cpu = statistics.median(plan.cpu), statistics.median(libraries.cpu)
    ratio = plan_wall / libraries_wall
    modules = libraries.command[-1].count(",") + 1
    verdict = "within" if ratio <= TARGET_RATIO else "above"
    return [
        f"plan:      {' '.join(plan.command[1:])}",
        f"libraries: python -c 'import ...' of the {modules} installed modules the plan loads",
        f"{len(plan.wall)} runs each, medians:",
        f"  wall  plan {plan_wall:.3f} s  libraries {libraries_wall:.3f} s  ratio {ratio:.2f}",
        f"  cpu   plan {plan_cpu:.3f} s  libraries {libraries_cpu:.3f} s  ratio {plan_cpu / libraries_cpu:.2f}",
        f"ratio {ratio:.2f}: {verdict} the target of {TARGET_RATIO}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-plan", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each command (default 5)")
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print(f"RUNS = {args.runs}: must be at least 1", file=sys.stderr)
        return 2
    if not (ROOT / f"Pulumi.{args.stack}.yaml").exists():
        print(f"STACK = {args.stack!r}: no Pulumi.{args.stack}.yaml", file=sys.stderr)
        return 2
    print("\n".join(report(*benchmark(args.runs, args.stack))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
