"""Explaining the operating system's microphone permission to the user.

macOS and Windows keep the microphone from an app until the user allows it, and neither tells
the app clearly: macOS hands an app without permission a stream of exact zeros, Windows fails
to open the stream with a host error (``0x80070005``, access denied) or, like macOS, delivers
silence. These helpers spot both signs and say, in the user's terms, where to allow access.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

#: Seconds of exact zeros after which an open microphone is taken to be withheld by the OS.
SILENCE_SECONDS = 2.0

_DENIED_MARKERS = ("0x80070005", "access is denied", "access denied", "permission", "not permitted")

_HELP = {
    "darwin": (
        "macOS lets Parley use the microphone only with your permission. Open System Settings → "
        "Privacy & Security → Microphone, turn Parley on, then quit and reopen Parley."
    ),
    "win32": (
        "Windows is keeping the microphone from Parley. Open Settings → Privacy & security → "
        "Microphone, turn on “Microphone access” and “Let desktop apps access your "
        "microphone”, then restart Parley."
    ),
    "linux": (
        "Check that the microphone is connected, selected as the input device and not muted in "
        "the sound settings (or in pavucontrol's Input Devices)."
    ),
}

_SETTINGS_URI = {
    "darwin": "x-apple.systempreferences:com.apple.preference.security?Privacy_Microphone",
    "win32": "ms-settings:privacy-microphone",
}

_FIRST_RUN = {
    "win32": (
        "If Parley does not hear you, Windows may be keeping the microphone from desktop apps: "
        "Settings → Privacy & security → Microphone → “Let desktop apps access your microphone”."
    ),
    "darwin": (
        "macOS will ask whether Parley may use the microphone. Choose Allow; you can change it "
        "later in System Settings → Privacy & Security → Microphone."
    ),
}


def _os(platform: str | None) -> str:
    name = platform or sys.platform
    return name if name in ("darwin", "win32") else "linux"


def microphone_help(platform: str | None = None) -> str:
    """What to do when the microphone is withheld or silent, for ``platform`` (``sys.platform``)."""
    return _HELP[_os(platform)]


def privacy_settings_uri(platform: str | None = None) -> str | None:
    """A URI that opens the OS's microphone privacy page (for an "Open settings" button)."""
    return _SETTINGS_URI.get(_os(platform))


def first_run_hint(platform: str | None = None) -> str | None:
    """A one-time note for the first launch on an OS that gates the microphone, else None."""
    return _FIRST_RUN.get(_os(platform))


def looks_denied(error: BaseException | str) -> bool:
    """True when an error opening the microphone reads like the OS refusing access."""
    text = str(error).lower()
    return any(marker in text for marker in _DENIED_MARKERS)


class WithheldWatch:
    """Follows a microphone's raw samples from the moment it opens, block by block, and tells
    when it has delivered nothing but exact zeros for ``SILENCE_SECONDS`` (``withheld``) and
    when sound came.

    A real microphone, even in a silent room, never delivers exact digital zeros that long; an
    OS withholding the device does from the start, and so does one muted when it opened. Once
    the device has sent sound it is not withheld: a virtual device (a sound server's monitor,
    a routing tool) goes quiet with exact zeros whenever nothing plays into it.
    """

    def __init__(self, sample_rate: int) -> None:
        self._limit = round(SILENCE_SECONDS * sample_rate)
        self._zeros = 0  # samples observed, all exact zeros
        self._heard = False
        self.withheld = False

    def observe(self, block: npt.NDArray[np.floating]) -> bool:
        """Take the next block of samples; True when ``withheld`` changed with it."""
        if self._heard:
            return False
        if np.any(block):
            self._heard = True
            changed, self.withheld = self.withheld, False
            return changed
        self._zeros += len(block)
        if self.withheld or self._zeros < self._limit:
            return False
        self.withheld = True
        return True
