"""``stream-orch run --processes N``: N worker processes of one topology under one supervisor.

A Python worker is one thread; a machine with more cores runs more workers. The supervisor starts
them as members of the same consumer groups, each with its own state folder (RocksDB locks never
collide) and so its own static member id; it restarts a member that dies (same folder, same id: its
partitions come back without a rebalance), forwards SIGTERM/SIGINT/SIGHUP, and serves one
/metrics, /health, /ready and /status for all of them. It knows nothing of topologies beyond the
command line it re-runs: each member is an ordinary ``stream-orch run``.
"""
