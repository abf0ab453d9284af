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


def test_exact_zeros_for_two_seconds_mean_a_withheld_microphone_until_sound_comes() -> None:
    rate = 16_000
    watch = mic_access.WithheldWatch(rate)
    block = rate // 10
    changes = [watch.observe(np.zeros(block, np.float32)) for _ in range(20)]
    assert changes == [False] * 19 + [True]  # two seconds of zeros, counted across blocks
    assert watch.withheld
    assert not watch.observe(np.zeros(block, np.float32))  # told once
    quiet_room = np.random.default_rng(0).normal(0, 1e-4, block).astype(np.float32)
    assert watch.observe(quiet_room) and not watch.withheld


def test_a_microphone_that_has_sent_sound_is_not_withheld_when_it_goes_quiet() -> None:
    """A sound server's monitor, or a routing tool, sends exact zeros while nothing plays."""
    rate = 16_000
    watch = mic_access.WithheldWatch(rate)
    sound = np.zeros(rate, np.float32)
    sound[: rate // 2] = 1e-4
    assert not watch.observe(sound)
    assert not watch.observe(np.zeros(5 * rate, np.float32)) and not watch.withheld
