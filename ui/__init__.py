"""Parley's desktop window: a thin Qt layer over ``assistant.app.Assistant``.

The app itself lives in ``assistant/`` and never imports Qt. Here, ``ui.bridge`` turns the
assistant's events into one Qt signal that the widgets ``match`` on, and the widgets call the
assistant's methods for what the user does.
"""
