"""The software room's speaker: where each output block lands on the room's 16 kHz grid.

The room's thread is not started: the test calls its output tick with chosen due times, as the
thread would, so underflows happen exactly where the test puts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from assistant.audio.room import EchoPath, RoomAcoustics, SoftwareRoom
from assistant.types import CAPTURE_RATE

RATE = 48_000
BLOCK = 512
PERIOD = BLOCK / RATE
LATENCY = 0.03


def _tone_then_silence(blocks_of_tone: int) -> Any:
    """An output callback: a tone for ``blocks_of_tone`` blocks, then exact zeros."""
    rendered = [0]

    def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        k = rendered[0]
        rendered[0] += 1
        if k < blocks_of_tone:
            t = (np.arange(frames) + k * frames) / RATE
            outdata[:, 0] = 0.25 * np.sin(2 * np.pi * 440.0 * t)
        else:
            outdata.fill(0.0)

    return callback


def _last_sound(x: np.ndarray) -> float:
    """Room seconds at which ``x`` (from room time 0) last carries sound (above -40 dBFS: the
    resampler's filter rings faintly on at a block played after a gap)."""
    loud = np.flatnonzero(np.abs(x) >= 0.01)
    return float(loud[-1] + 1) / CAPTURE_RATE if len(loud) else 0.0


def _play(dues: list[float], blocks_of_tone: int, path: EchoPath | None = None) -> SoftwareRoom:
    room = SoftwareRoom(path, output_latency=LATENCY)
    stream = room.output_stream(
        samplerate=RATE, blocksize=BLOCK, callback=_tone_then_silence(blocks_of_tone)
    )
    stream.start()
    for due in dues:
        room._tick_output(stream, due)
    return room


def test_the_speaker_goes_quiet_when_the_last_block_of_sound_has_played() -> None:
    dues = [1.0 + k * PERIOD for k in range(30)]
    room = _play(dues, blocks_of_tone=10)
    end_of_tone = dues[10] + LATENCY
    # The resampler's filter rings for a few ms after the tone; nothing more.
    assert abs(_last_sound(room.played(0.0, 3.0)) - end_of_tone) < 0.006


def test_what_the_resampler_held_back_before_an_underflow_plays_before_the_gap() -> None:
    # Ten blocks of tone, then the thread is 50 ms late: the device ran dry and plays the next
    # (silent) blocks after a gap. The resampler still held part of the tone back then: it
    # belongs where the tone was, not after the gap.
    dues = [1.0 + k * PERIOD for k in range(10)]
    dues += [dues[-1] + PERIOD + 0.05 + k * PERIOD for k in range(20)]
    room = _play(dues, blocks_of_tone=10)
    end_of_tone = dues[9] + PERIOD + LATENCY
    played = room.played(0.0, 3.0)
    assert abs(_last_sound(played) - end_of_tone) < 0.006
    # And all of the tone was played: it fills its blocks' span up to its end.
    start = round((dues[0] + LATENCY) * CAPTURE_RATE)
    span = played[start : round((end_of_tone - 0.006) * CAPTURE_RATE)]
    assert np.sqrt(np.mean(span**2)) > 0.15


def test_blocks_that_follow_each_other_play_without_a_gap_after_an_underflow() -> None:
    dues = [1.0 + k * PERIOD for k in range(10)]
    dues += [dues[-1] + PERIOD + 0.05 + k * PERIOD for k in range(30)]
    room = _play(dues, blocks_of_tone=40)
    played = room.played(0.0, 3.0)
    after = dues[10] + LATENCY
    # From where the first block after the gap plays, the tone goes on with no hole (the
    # resampler's filter may fade in over its first samples).
    first, last = after + 0.006, dues[-1] + LATENCY
    tail = played[round(first * CAPTURE_RATE) : round(last * CAPTURE_RATE)]
    assert len(tail) > 0.25 * CAPTURE_RATE
    whole = len(tail) // 16 * 16
    assert np.min(np.abs(tail[:whole]).reshape(-1, 16).max(axis=1)) > 0.05


def test_the_room_echoes_what_was_played_before_an_underflow_through_the_gap() -> None:
    # The tone stops at an underflow: a real room goes on echoing the tone's last 120 ms into
    # the gap, and the echo of what comes after the gap is as late as any other.
    path = EchoPath(delay_ms=120, gain_db=-6.0, reverb=True)
    dues = [1.0 + k * PERIOD for k in range(10)]
    dues += [dues[-1] + PERIOD + 0.2 + k * PERIOD for k in range(30)]
    room = _play(dues, blocks_of_tone=40, path=path)
    played = room.played(0.0, 3.0)
    expected = RoomAcoustics(path)(played)
    heard = room._echo[: len(played)]
    gap_start = round((dues[9] + PERIOD + LATENCY) * CAPTURE_RATE)
    echo_of_the_tone = heard[gap_start : gap_start + round(0.1 * CAPTURE_RATE)]
    assert np.sqrt(np.mean(echo_of_the_tone**2)) > 0.05
    assert np.max(np.abs(heard - expected)) < 1e-4
