"""Prompts as text: the phrase vocabulary, structured prompts, and the text encoders."""
