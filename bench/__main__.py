"""`make bench`: every scenario in turn, its report appended to bench/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SCENARIOS = {
    "ingest": ["-m", "bench.ingest"],
    "api": ["-m", "bench.api_queries"],
    "compression": ["-m", "bench.api_compression"],
    "simulator": ["-m", "bench.simulator_throughput", "--duration", "20", "--connections", "1"],
    "dashboard": ["-m", "bench.dashboard_overview"],
    "sta": ["-m", "bench.sta"],
    "broker-login": ["-m", "bench.broker_login"],
    "alerts": ["-m", "bench.alerts", "--devices", "10000", "--rules", "200", "--no-save"],
}


def main() -> int:
    """Run the scenarios named on the command line (default: all)."""
    wanted = sys.argv[1:] or list(SCENARIOS)
    failed = 0
    for name in wanted:
        module = SCENARIOS[name][1]
        if not (Path(__file__).parent / f"{module.split('.')[-1]}.py").exists():
            print(f"{name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        run = subprocess.run(
            [sys.executable, *SCENARIOS[name]], capture_output=True, text=True, check=False
        )
        print(run.stdout, run.stderr[-2000:] if run.returncode else "", sep="\n")
        if run.returncode:
            failed += 1
            continue
        with (RESULTS / f"{name}.md").open("a") as report:
            report.write("\n" + run.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
