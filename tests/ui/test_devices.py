"""Devices plugged in while the window is open: the list in the settings follows, a microphone
that appears is used at once, a chosen one that goes away is shown as not connected; the watch
looks again on its timer. The device list is a fake one that changes; the audio is virtual."""

from __future__ import annotations

import asyncio

import pytest

from assistant.app.devices import DeviceWatch
from assistant.audio.capture import ArraySource
from assistant.audio.devices import DeviceChoice, DeviceList
from assistant.clock import ManualClock
from assistant.engines.base import EngineUnavailable
from assistant.events import DevicesChanged, Notice
from tests.ui.helpers import PATIENCE, collect, noise_source, run, show_window, started, until

pytestmark = pytest.mark.gui

HEADSET = DeviceChoice("pulse:usb_headset", "USB Headset", is_default=True)
SPEAKERS = DeviceChoice("pulse:speakers", "Built-in Speakers", is_default=True)


class Machine:
    """A computer whose sound devices the test plugs in and out."""

    def __init__(self) -> None:
        self.devices = DeviceList(outputs=(SPEAKERS,), via="PulseAudio")
        self.looks = 0
        self._microphone = noise_source()

    def list(self) -> DeviceList:
        self.looks += 1
        return self.devices

    def microphone(self, settings) -> ArraySource:
        if not self.devices.inputs:
            raise EngineUnavailable("No audio input device: none is connected.", retryable=False)
        return self._microphone(settings)


def test_a_microphone_plugged_in_later_is_listed_and_used(qtbot, qloop, assistants):
    machine = Machine()
    assistant = assistants(
        source_factory=machine.microphone, device_lister=machine.list, persist=False
    )
    window = show_window(qtbot, assistant)
    changes = collect(assistant, DevicesChanged)
    notices = collect(assistant, Notice)

    async def scenario() -> None:
        await started(assistant)
        await until(lambda: machine.looks >= 1, what="the first look")
        assert not assistant.microphone_ok
        assert "No microphone" in window.hint_label.text()
        dialog = window.open_settings()
        assert [dialog.input_combo.itemText(i) for i in range(dialog.input_combo.count())] == [
            "System default"
        ]
        assert "Built-in Speakers  (default)" in [
            dialog.output_combo.itemText(i) for i in range(dialog.output_combo.count())
        ]
        # The headset is plugged in.
        machine.devices = DeviceList((HEADSET,), (SPEAKERS,), "PulseAudio")
        await assistant.refresh_devices()
        assert changes and changes[-1].devices.inputs == (HEADSET,)
        assert dialog.input_combo.findData(HEADSET.key) > 0  # the open dialog follows
        await until(lambda: assistant.microphone_ok, what="the microphone to be used")
        # The notice follows once the audio chains have restarted, a step after the microphone
        # is back.
        await until(
            lambda: any("USB Headset is connected" in n.message for n in notices),
            what="the notice that the headset is used",
        )
        assert "No microphone" not in window.hint_label.text()
        # Chosen by name, then unplugged: it stays chosen, marked as not connected.
        dialog.input_combo.setCurrentIndex(dialog.input_combo.findData(HEADSET.key))
        assert dialog.result_settings().input_device == "pulse:usb_headset"
        machine.devices = DeviceList((), (SPEAKERS,), "PulseAudio")
        task = dialog.refresh_devices()
        assert task is not None
        await task
        index = dialog.input_combo.currentIndex()
        assert dialog.input_combo.itemData(index) == "pulse:usb_headset"
        assert dialog.input_combo.itemText(index) == "usb_headset (not connected)"
        dialog.reject()
        await assistant.close()

    run(qloop, scenario(), 4 * PATIENCE)


def test_the_watch_looks_again_on_its_timer():
    clock = ManualClock()
    machine = Machine()
    seen: list[DeviceList] = []

    async def scenario() -> None:
        watch = DeviceWatch(lambda _old, new: seen.append(new), lister=machine.list, clock=clock)
        watch.start()
        await clock.settle()
        await until(lambda: machine.looks == 1, what="the first look")
        machine.devices = DeviceList((HEADSET,), (SPEAKERS,), "PulseAudio")
        await clock.advance(2.0)
        assert seen == []  # not yet: the next look is due at 3 s
        await clock.advance(1.5)
        await until(lambda: seen, what="the change to be noticed")
        assert seen[-1].inputs == (HEADSET,)
        await watch.stop()

    asyncio.run(scenario())
