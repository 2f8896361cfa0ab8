"""Side-by-side benchmarks of stream-orch against aiokafka, Faust and Quix Streams.

Run ``python -m benchmarks run [--quick]``; see ``benchmarks/README.md`` for what is measured
and how.
"""
