"""Text-to-image models: images (as embeddings) for prompts."""
