"""Run every benchmark and print its figures: ``make bench`` or ``python -m bench [name ...]``."""

from __future__ import annotations

import importlib
import sys
import time

SUITES = ["bench_engine", "bench_console", "bench_qr", "bench_qr_server", "bench_sse", "bench_webhooks",
          "bench_hosts", "bench_hardening", "bench_connections", "bench_store", "bench_pg_store", "bench_cluster", "bench_stats",
          "bench_media", "bench_pacing", "bench_scale"]


def main() -> None:
    names = sys.argv[1:] or SUITES
    for name in names:
        module = importlib.import_module(f"bench.{name if name.startswith('bench_') else 'bench_' + name}")
        print(f"\n=== {module.__name__} ===", flush=True)
        started = time.perf_counter()
        saved, sys.argv = sys.argv, [module.__name__]
        try:
            module.main()
        finally:
            sys.argv = saved
        print(f"({module.__name__} took {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
