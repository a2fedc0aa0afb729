"""One file, end to end: read -> map -> validate -> deliver -> report (see docs/architecture.md)."""
