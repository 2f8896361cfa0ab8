"""benchmarks.hotpath's one_pass on topologies/reconciliation.yaml (node reconcile: interval join
payments x settlements), for the checkout in the cwd: CPU us per input record per stage."""

import asyncio
import gc
import sys
from collections import defaultdict

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

import benchmarks.hotpath as h
from benchmarks.data import partition_for
from stream_orch.tools.generate_recon import generate_reconciliation

h.TOPOLOGIES["join"] = (h.REPO / "topologies" / "reconciliation.yaml", "reconcile")
_init = h.Node.__init__


def init(self, name, profiles):
    _init(self, name, profiles)
    self.tier_of["settlements"] = 0


h.Node.__init__ = init
n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
records, plan = generate_reconciliation(n, seed=7, minutes=120.0, partitions=6, start_ms=1_700_000_000_000)
batch_size = 500
offsets = defaultdict(int)
batches = []
for start in range(0, len(records), batch_size):
    batch = {}
    for r in records[start : start + batch_size]:
        p = partition_for(r.key, 6)
        off = offsets[(r.topic, p)]
        offsets[(r.topic, p)] += 1
        cr = ConsumerRecord(
            r.topic, p, off, 1_700_000_000_000, 0, r.key, r.value, None, len(r.key), len(r.value), []
        )
        batch.setdefault(TopicPartition(r.topic, p), []).append(cr)
    batches.append(batch)
gc.collect()
gc.freeze()
best = {}
for _ in range(5):
    spent, outputs = asyncio.run(h.one_pass("join", {}, batches))
    for k, v in spent.items():
        best[k] = min(best.get(k, v), v)
total = len(records)
per = {k: round(v / 1000 / total, 3) for k, v in best.items()}
print(per, "total", round(sum(per.values()), 2), "outputs", outputs, "records", total)
