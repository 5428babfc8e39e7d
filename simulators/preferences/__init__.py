"""Preference data: the on-disk format and adapters for public datasets."""
