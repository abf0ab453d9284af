"""Parley's engine: the streaming voice-conversation core. Never imports Qt."""

__version__ = "0.1.0"
