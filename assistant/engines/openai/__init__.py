"""Adapters for OpenAI and every OpenAI-compatible endpoint."""
