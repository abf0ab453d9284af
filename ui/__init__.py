"""Parley's desktop window: a thin Qt layer that renders the session's events and sends it commands.

The conversation engine lives in ``assistant/`` and never imports Qt; everything here only shows
what the engine reports and forwards what the user does (``ui.controller`` is the seam).
"""
