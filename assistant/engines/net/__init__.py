"""The network layer every cloud adapter stands on, one concern a module.

- ``redact``: keys out of every text (log lines, messages, exception texts).
- ``errors``: HTTP statuses, close codes and transport failures → actionable ``EngineError``s.
- ``retry``: backoff with jitter, ``retry-after``, retry budgets, quick-failure tracking,
  the per-provider ``Policy``.
- ``urls``, ``messages``, ``pacing``: URL helpers, total readers of server messages, real-time
  pacing of audio.
- ``websocket``: connecting with retries, and the one ``ReconnectingSocket``.
- ``http``: the one HTTP client (httpx).
- ``stt_protocol`` / ``stt_driver``: streaming speech to text, wire rules without I/O and the
  driver that runs them.
- ``tts_protocol`` / ``tts_driver``: multi-context text to speech, likewise.
- ``voices``: a provider's voice list, cached.

Provider modules (``engines/assemblyai.py`` …) hold only their wire rules (objects with no I/O)
and the engine that hands them to a driver.
"""
