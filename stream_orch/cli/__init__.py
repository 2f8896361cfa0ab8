"""The ``stream-orch`` command line: thin wrappers that parse arguments and call the packages."""
