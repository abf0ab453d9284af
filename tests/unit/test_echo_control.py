"""The app's echo control: on/auto/off, the far-end tap and the processor hung on the right
devices, strict barge-in without the wheel (and one notice), re-made on a new echo path; the
settings keys that drive it."""

from __future__ import annotations

import numpy as np

from assistant.app.echo import EchoControl, plan
from assistant.app.settings import compare
from assistant.audio.capture import ArraySource, MicrophoneCapture
from assistant.audio.echo import EchoCanceller
from assistant.audio.player import VirtualPlayer
from assistant.config import Settings, settings_from_dict, settings_to_dict
from assistant.events import EchoStatus, Notice, Source


class NullApm:
    latency = 0

    def __init__(self, cancel: bool, suppress: bool) -> None:
        pass

    def reverse(self, chunk: np.ndarray) -> None: ...

    def near(self, chunk: np.ndarray) -> None: ...

    def set_delay_ms(self, ms: int) -> None: ...


def control(available: bool = True) -> tuple[EchoControl, list[object]]:
    events: list[object] = []
    made: list[EchoCanceller] = []

    def factory(cancel: bool, suppress: bool) -> EchoCanceller:
        made.append(
            EchoCanceller(echo_cancellation=cancel, noise_suppression=suppress, apm_factory=NullApm)
        )
        return made[-1]

    echo = EchoControl(emit=events.append, available=lambda: available, factory=factory)
    return echo, events


def settings(mode: str = "auto", noise: bool = False) -> Settings:
    s = Settings()
    s.echo_cancellation = mode  # type: ignore[assignment]
    s.noise_suppression = noise
    return s


def test_auto_cancels_on_speakers_but_not_on_a_headset() -> None:
    assert plan(settings("auto"), "Built-in Audio Analog Stereo").cancel
    for headset in ("Jabra Evolve2 65", "WH-1000XM4 Headphones", "AirPods Pro", "USB Headset"):
        assert not plan(settings("auto"), headset).cancel, headset
    assert plan(settings("on"), "USB Headset").cancel
    off = plan(settings("off"), "Built-in Audio")
    assert not off.cancel and "Settings" in off.reason


def test_the_tap_goes_on_the_speaker_and_the_processor_in_the_microphone() -> None:
    echo, events = control()
    echo.configure(settings("on"))
    player = VirtualPlayer(pace="realtime")
    mic = MicrophoneCapture()
    echo.attach_output(player)
    echo.attach_input(mic)
    assert echo.canceller is not None
    assert player.taps == [echo.canceller.tap.rendered]
    assert mic.processor is echo.canceller
    assert echo.cancelling and echo.uncertain  # until the echo return loss is known
    status = [e for e in events if isinstance(e, EchoStatus)][-1]
    assert status.cancelling and not status.settled
    # Turned off in Settings: nothing hangs on the devices any more, nothing is uncertain.
    echo.configure(settings("off"))
    assert player.taps == [] and mic.processor is None
    assert not echo.uncertain and not echo.cancelling


def test_no_echo_without_a_microphone_and_a_speaker_that_plays_aloud() -> None:
    echo, _ = control()
    echo.configure(settings("on"))
    echo.attach_output(VirtualPlayer(pace="fast"))  # nobody hears it
    echo.attach_input(MicrophoneCapture())
    assert not echo.uncertain
    echo.attach_output(VirtualPlayer(pace="realtime"))
    echo.attach_input(ArraySource(np.zeros(512, np.int16)))  # a file has no room around it
    assert not echo.uncertain


def test_without_the_wheel_barge_in_stays_strict_and_the_user_is_told_once() -> None:
    echo, events = control(available=False)
    echo.configure(settings("on"))
    echo.attach_output(VirtualPlayer(pace="realtime"))
    echo.attach_input(MicrophoneCapture())
    assert echo.canceller is None
    assert echo.uncertain  # speakers and no canceller: words are needed to interrupt
    echo.configure(settings("on", noise=True))
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "headphones" in notices[0].message
    assert notices[0].source is Source.AUDIO
    status = [e for e in events if isinstance(e, EchoStatus)][-1]
    assert not status.cancelling and "unavailable" in status.detail


def test_a_new_microphone_or_output_rate_is_a_new_echo_path() -> None:
    echo, _ = control()
    echo.configure(settings("on"))
    echo.attach_output(VirtualPlayer(rate=24_000, pace="realtime"))
    echo.attach_input(MicrophoneCapture())
    canceller = echo.canceller
    assert canceller is not None
    canceller.process(np.zeros(160, np.float32), 1.0)
    canceller._settled = True
    echo.attach_input(MicrophoneCapture())  # the same canceller, re-made inside
    assert echo.canceller is canceller and canceller.uncertain
    canceller._settled = True
    echo.attach_output(VirtualPlayer(rate=48_000, pace="realtime"))
    assert canceller.uncertain


def test_old_settings_files_load_and_echo_changes_only_reconfigure_the_processor() -> None:
    old = {k: v for k, v in settings_to_dict(Settings()).items()}
    old.pop("echo_cancellation")
    old.pop("noise_suppression")
    old["interruption"].pop("pause_after_ms")
    loaded = settings_from_dict(old)
    assert loaded.echo_cancellation == "auto" and loaded.noise_suppression is False
    change = compare(loaded, settings("off"))
    assert change.reconfigure_echo
    assert not (change.reopen_session or change.restart_input or change.rebuild_engines)
