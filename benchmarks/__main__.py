"""``make bench``: run every benchmark; one JSON object per figure on stdout."""

from __future__ import annotations

import logging
import sys

from benchmarks import deployment_bench, optimizer_bench, scheduler_bench, wire_bench


def main() -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    scheduler_bench.main()
    optimizer_bench.main()
    wire_bench.main()
    deployment_bench.run_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
