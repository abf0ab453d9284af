"""Spotting a microphone the OS withholds, and telling the user where to allow it."""

from __future__ import annotations

import numpy as np
import pytest

from assistant import mic_access


@pytest.mark.parametrize(
    ("platform", "words"),
    [("darwin", "Privacy & Security"), ("win32", "Let desktop apps"), ("linux", "muted")],
)
def test_each_os_gets_its_own_directions(platform: str, words: str) -> None:
    assert words in mic_access.microphone_help(platform)


def test_settings_pages_exist_only_where_the_os_has_them() -> None:
    assert mic_access.privacy_settings_uri("win32") == "ms-settings:privacy-microphone"
    assert mic_access.privacy_settings_uri("darwin").startswith("x-apple.systempreferences:")
    assert mic_access.privacy_settings_uri("linux") is None
    assert mic_access.first_run_hint("linux") is None
    assert "Microphone" in (mic_access.first_run_hint("win32") or "")


def test_access_denied_errors_are_recognised() -> None:
    windows = (
        "Error opening InputStream: Unanticipated host error [PaErrorCode -9999]: "
        "'Access is denied. (0x80070005)'"
    )
    assert mic_access.looks_denied(OSError(windows))
    assert not mic_access.looks_denied("Invalid sample rate [PaErrorCode -9997]")


def test_exact_zeros_for_two_seconds_mean_a_withheld_microphone() -> None:
    rate = 16_000
    assert mic_access.is_withheld_silence(np.zeros(2 * rate, np.float32), rate)
    assert not mic_access.is_withheld_silence(np.zeros(rate, np.float32), rate)  # too short
    quiet_room = np.random.default_rng(0).normal(0, 1e-4, 2 * rate).astype(np.float32)
    assert not mic_access.is_withheld_silence(quiet_room, rate)
