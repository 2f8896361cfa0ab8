"""The operations console: a topology's graph as a web page with live figures (issue 26)."""
