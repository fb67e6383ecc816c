"""Triton model repositories for Swallow: generator, Python-backend models and the server launcher."""
