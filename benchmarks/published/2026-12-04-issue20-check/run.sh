#!/bin/bash
# ABBA: new old old new, one harness run each (the same four contenders, 1 warm-up + 1 round)
set -u
i=0
for side in new old old new; do
  i=$((i+1))
  if [ $side = new ]; then d=/work/wt/i20misc; else d=/work/wt/i20misc-old; fi
  echo "== $i $side start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd $d && .venv/bin/python -m benchmarks run --only quix_window,engine_window,quix_join,engine_join \
      --records 100000 --runs 1 --warmup-rounds 1 --no-latency --no-scaling \
      --out /tmp/i20bench/$i-$side > /tmp/i20bench/$i-$side.log 2>&1)
  echo "== $i $side rc $? end $(date -u +%T)"
done
