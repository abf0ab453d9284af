"""The fault matrix's scenarios, by where the fault is: the engines' behaviour (virtual time), the
network (a fault proxy in front of the fake provider servers), malformed provider messages, the
sound devices, the disk, the keyring, the local model server, and the speech-to-speech provider."""

from __future__ import annotations

from tests.faults.matrix import Scenario
from tests.faults.scenarios import (
    devices,
    disk,
    engines,
    keyrings,
    local_server,
    messages,
    network,
    speech_to_speech,
)

SCENARIOS: tuple[Scenario, ...] = (
    *engines.SCENARIOS,
    *network.SCENARIOS,
    *speech_to_speech.SCENARIOS,
    *messages.SCENARIOS,
    *devices.SCENARIOS,
    *disk.SCENARIOS,
    *keyrings.SCENARIOS,
    *local_server.SCENARIOS,
)
