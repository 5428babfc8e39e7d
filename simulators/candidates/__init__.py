"""Candidate generators: the prompt expansions proposed each turn."""
