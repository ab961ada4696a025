"""`make bench`: the end-to-end pipeline benchmark (see bench/bench_pipeline.py; others run on their own)."""

import sys

from bench.bench_pipeline import main

sys.exit(main())
