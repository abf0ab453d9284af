"""Parley's ``Assistant`` on the real sound devices (scripted engines), for the hot-plug test.

Started as ``python tests/e2e/hotplug_app.py`` with the environment of a PulseAudio server that
may not be running yet. Prints one JSON line per event the test needs (audio status, device
lists, notices, errors), and reads commands, one a line, from stdin:

- ``output <setting>``: choose the output device (a key from the device list);
- ``speak <text>``: type a message, so a reply plays through the speaker;
- ``quit``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from typing import Any

from assistant.app import Assistant
from assistant.config import Settings
from assistant.events import AppEvent, AudioStatus, DevicesChanged, ErrorEvent, Notice, Ready


def out(kind: str, **data: Any) -> None:
    print(json.dumps({"kind": kind, **data}), flush=True)


def report(event: AppEvent) -> None:
    match event:
        case AudioStatus(microphone_ok=mic, speaker_ok=speaker):
            out("audio", microphone=mic, speaker=speaker)
        case DevicesChanged(devices=found):
            out(
                "devices",
                inputs=[(c.key, c.label) for c in found.inputs],
                outputs=[(c.key, c.label) for c in found.outputs],
                via=found.via,
            )
        case Ready(ready=ready):
            out("ready", ready=ready)
        case Notice(message=message, source=source):
            out("notice", message=message, source=source)
        case ErrorEvent(message=message, source=source):
            out("error", message=message, source=source)


async def main() -> int:
    settings = Settings(stt="fake", llm="fake", tts="fake")
    assistant = Assistant(settings, persist=False)
    assistant.events.subscribe(report)
    await assistant.start()
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out("started")
    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        if command == "output":
            changed = copy.deepcopy(assistant.settings)
            changed.output_device = argument
            await assistant.apply_settings(changed)
            out("applied", output=argument)
        elif command == "speak":
            await assistant.wait_ready(30)
            assistant.submit_text(argument)
            out("spoken", accepted=True)
        elif command == "quit":
            break
    await assistant.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
