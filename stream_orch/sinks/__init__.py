"""External delivery targets (issue 21): sinks a node delivers to inside its batch."""
