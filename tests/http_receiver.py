"""``python -m tests.http_receiver``: the receiver of :mod:`stream_orch.testing.http_receiver`
(kept here for the tests and the README's examples that start it by this name)."""

from stream_orch.testing.http_receiver import main

if __name__ == "__main__":
    main()
