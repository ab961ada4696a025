"""`make bench`: latency, memory and (with --concurrency) throughput beside the old behaviour (bench/bench_speed.py).

The other benchmarks run on their own: ``python -m bench.bench_<name>``.
"""

import sys

from bench.bench_speed import main

sys.exit(main())
