"""The application runtime: Parley assembled once, with no Qt.

``Assistant`` (``assistant.py``) is the composition root the window, ``parley talk`` and the
benchmarks share. Its parts, one concern each:

- ``engines.py``   ``EngineSet``: the three fallback chains, warm-up with progress, closing.
- ``audio.py``     the input chain (source → session) and the output chain (player, device loss).
- ``devices.py``   watching the sound devices, so one plugged in later is used at once.
- ``settings.py``  loading and saving settings, and what a change of settings must rebuild.
- ``turn_taking.py`` voice activity detection and the end-of-turn model for hands-free.
- ``voice.py``     voice lists and the voice preview.
- ``messages.py``  every sentence the app says to the user.
"""

from assistant.app.assistant import Assistant, EngineFactory
from assistant.app.audio import PlayerFactory, SourceFactory
from assistant.app.engines import EngineSet

__all__ = ["Assistant", "EngineFactory", "EngineSet", "PlayerFactory", "SourceFactory"]
