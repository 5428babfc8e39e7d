"""Reproducible measurements of pasta-t2i: each script prints a table and writes JSON."""
