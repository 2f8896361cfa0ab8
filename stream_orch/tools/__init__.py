"""Producer and analyst tools: produce, tail, generate."""
