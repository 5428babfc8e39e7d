"""The ``pasta`` command line."""
