"""benchmarks.hotpath on benchmarks/topologies/window.yaml, for the checkout in the cwd."""

import sys

import benchmarks.hotpath as h

h.TOPOLOGIES["window"] = (h.REPO / "benchmarks" / "topologies" / "window.yaml", "merchant_counts")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
per, outputs = h.measure("window", n, 5)
print({k: round(v, 3) for k, v in per.items()}, outputs)
