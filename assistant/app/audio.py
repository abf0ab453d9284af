"""The audio chains: microphone → conversation, and conversation → speaker.

``AudioInput`` pumps the source's frames to a sink (the session's ``feed``) on the loop. It is
the one place every captured frame passes through on its way to the conversation. The echo
canceller (``EchoControl``, with the player's output as its far end) gets each microphone
before it starts and runs inside it, on the 16 kHz stream before frames are cut, so every
frame the conversation sees is processed audio; ``_pump`` lets it report after each frame.
``AudioOutput`` opens the player and, when the device is missing, falls back to a silent virtual
one so replies still arrive as text. Both report device trouble as ``ErrorEvent``s
with the sources ``audio-input``/``audio-output`` (a view offers Retry for those) and call
``on_change`` whenever whether they work may have changed. A microphone that opens but sends
only exact zeros (the OS withholds it, or it is muted) is told once as a ``Notice`` with
directions, and ``AudioInput.silent`` says so until sound comes back.

Both take factories from the settings, so tests and headless callers plug in WAV files, arrays
and virtual devices in place of the sound card.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from assistant.app import messages
from assistant.audio.capture import AudioSource, LookingSource, MicrophoneCapture
from assistant.audio.frames import AudioFrame
from assistant.audio.player import DevicePlayer, Player, VirtualPlayer
from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.config import Settings
from assistant.events import AppEvent, ErrorEvent, Notice, Source
from assistant.tasks import cancel_and_wait
from assistant.types import AudioLook

if TYPE_CHECKING:
    from assistant.app.echo import EchoControl

log = logging.getLogger(__name__)

PlayerFactory = Callable[[Settings], Player]
#: None means "no microphone here" (typing still works).
SourceFactory = Callable[[Settings], AudioSource | None]


def device_id(name: str) -> int | str | None:
    """A device setting as PortAudio takes it: None (the default), an index or a name."""
    name = name.strip()
    if not name:
        return None
    return int(name) if name.isdigit() else name


def default_player(settings: Settings) -> Player:
    return DevicePlayer(device=device_id(settings.output_device))


def default_source(settings: Settings) -> AudioSource | None:
    return MicrophoneCapture(device=device_id(settings.input_device))


class AudioInput:
    """Source → ``sink``, frame by frame, until the source ends or ``stop()``; a source that
    looks between its frames (``LookingSource``) hands its looks to ``look``.

    ``on_end`` runs when the source ends by itself (a file ran out, a device vanished), so the
    conversation does not wait for the end of a turn that can no longer come.
    """

    def __init__(
        self,
        factory: SourceFactory,
        *,
        sink: Callable[[AudioFrame], Awaitable[None]],
        emit: Callable[[AppEvent], None],
        on_change: Callable[[], None],
        on_end: Callable[[], None],
        echo: EchoControl | None = None,
        look: Callable[[AudioLook], None] | None = None,
    ) -> None:
        self._factory = factory
        self._echo = echo
        self._sink = sink
        self._look = look
        self._emit = emit
        self._on_change = on_change
        self._on_end = on_end
        self._source: AudioSource | None = None
        self._task: asyncio.Task[None] | None = None
        #: A microphone is capturing.
        self.ok = False
        #: The system default is capturing because the chosen microphone could not be opened.
        self.substituted = False
        #: The microphone is open but has sent only exact zeros for a while: the OS withholds
        #: it (macOS without permission) or it is muted. Cleared when sound comes.
        self.silent = False

    @property
    def running(self) -> bool:
        return self._source is not None

    async def start(self, settings: Settings) -> None:
        """Open the configured source and start pumping; a failure becomes a message.

        When the chosen microphone cannot be opened (it is not connected), the system default
        stands in for it, with a notice, and ``substituted`` is set until the next start.
        """
        self.substituted = False
        self.silent = False
        try:
            source = await self._open(settings)
        except Exception as exc:
            source = None
            if settings.input_device:
                with contextlib.suppress(Exception):
                    source = await self._open(dataclasses.replace(settings, input_device=""))
            if source is None:
                log.warning("microphone unavailable: %s", exc)
                self._set_ok(False)
                self._emit(ErrorEvent(messages.no_input(exc), Source.AUDIO_INPUT))
                return
            self.substituted = True
            self._emit(
                Notice(messages.input_substituted(settings.input_device), Source.AUDIO_INPUT)
            )
        if source is None:
            self._set_ok(False)
            return
        self._source = source
        self._set_ok(True)
        self._task = asyncio.ensure_future(self._pump(source))

    async def _open(self, settings: Settings) -> AudioSource | None:
        """The started source for ``settings`` (None: the factory says there is none)."""
        source = self._factory(settings)
        if source is None:
            return None
        source.on_error.append(self._lost)
        if self._echo is not None:
            self._echo.attach_input(source)
        try:
            await source.start()
        except BaseException:
            if self._echo is not None:
                self._echo.detach_input()
            with contextlib.suppress(Exception):
                await source.stop()
            raise
        return source

    async def stop(self) -> None:
        source, self._source = self._source, None
        task, self._task = self._task, None
        if self.silent:  # a closed microphone sends nothing to warn about
            self.silent = False
            self._on_change()
        if self._echo is not None:
            self._echo.detach_input()
        if source is not None:
            with contextlib.suppress(Exception):
                await source.stop()
        if task is not None:
            await cancel_and_wait(task)

    async def wait_ended(self) -> None:
        """Until the source has ended by itself (at once if nothing is capturing)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _pump(self, source: AudioSource) -> None:
        try:
            echo, look = self._echo, self._look
            items = (
                source.stream()
                if look is not None and isinstance(source, LookingSource)
                else source.frames()
            )
            async for item in items:
                # The session learns whether the echo is known before each piece of audio is
                # judged, not a frame late (a new stretch of playback or a fresh canceller).
                if echo is not None:
                    echo.poll()
                if isinstance(item, AudioLook):
                    if look is not None:
                        look(item)
                    continue
                if (
                    isinstance(source, MicrophoneCapture)
                    and source.withheld != self.silent
                    and self._source is source  # not one being stopped
                ):
                    self._silence_changed(source.withheld)
                await self._sink(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("audio capture failed")
            self._emit(ErrorEvent(messages.input_failed(exc), Source.AUDIO_INPUT))
        self._on_end()
        if self._source is source:
            if self._echo is not None:
                self._echo.detach_input()
            self._set_ok(False)

    def _silence_changed(self, silent: bool) -> None:
        self.silent = silent
        if silent:
            log.warning("the microphone sends only exact zeros: withheld by the OS, or muted")
            self._emit(Notice(messages.microphone_silent(), Source.AUDIO_INPUT))
        else:
            log.info("the microphone sends sound again")
        self._on_change()

    def _lost(self, message: str) -> None:
        self._set_ok(False)
        self._emit(ErrorEvent(messages.input_lost(message), Source.AUDIO_INPUT))

    def _set_ok(self, ok: bool) -> None:
        self.ok = ok
        if not ok:
            self.silent = False  # no microphone: nothing sends silence
        self._on_change()


#: A device lost again this soon after the last loss is not opened again until Retry.
FLAPPING_SECONDS = 10.0


class AudioOutput:
    """Opens players; ``on_lost(player)`` runs when the open device goes away during the
    conversation.

    Only the player opened last counts: once ``replacing()`` says it is about to be closed and
    replaced (Retry, a settings change), a loss it still reports (its watchdog giving up as the
    user presses Retry) is old news, logged and otherwise ignored.

    A device that is lost again within ``FLAPPING_SECONDS`` of its last loss (it opens, then
    dies at once) is not opened again until ``retry()``: a silent player stands in, with one
    message, rather than the conversation being rebuilt over and over.
    """

    def __init__(
        self,
        factory: PlayerFactory,
        *,
        emit: Callable[[AppEvent], None],
        on_change: Callable[[], None],
        on_lost: Callable[[Player], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._factory = factory
        self._emit = emit
        self._on_change = on_change
        self._on_lost = on_lost
        self._clock = clock
        self._lost_at: float | None = None
        self._held = False
        self._told = False
        #: Replies reach a real output device.
        self.ok = False
        #: The system default plays because the chosen output device could not be opened.
        self.substituted = False
        #: The player opened last, until ``replacing()`` (None: none, or being replaced).
        self.current: Player | None = None

    def retry(self) -> None:
        """The user asked for the device again (Retry): open it next time, whatever it did."""
        self._held = self._told = False
        self._lost_at = None

    def replacing(self) -> None:
        """The current player is about to be closed and a new one opened."""
        self.current = None

    async def open(self, settings: Settings) -> Player:
        """The configured output, or a silent virtual one (with a message) when it fails.

        When the chosen device cannot be opened (it is not connected), the system default
        stands in for it, with a notice, and ``substituted`` is set until the next open.
        """
        if self._held:
            silent = _Silent(RuntimeError(messages.OUTPUT_KEEPS_FAILING))
            await silent.start()
            self.ok = False
            self.substituted = False
            self._on_change()
            if not self._told:  # once per hold, however often the conversation is rebuilt
                self._told = True
                self._emit(ErrorEvent(messages.OUTPUT_KEEPS_FAILING, Source.AUDIO_OUTPUT))
            self.current = silent
            return silent
        player = await self.open_quietly(settings)
        self.substituted = False
        if isinstance(player, _Silent) and settings.output_device:
            fallback = await self.open_quietly(dataclasses.replace(settings, output_device=""))
            if not isinstance(fallback, _Silent):
                player, self.substituted = fallback, True
                self._emit(
                    Notice(messages.output_substituted(settings.output_device), Source.AUDIO_OUTPUT)
                )
        self.ok = not isinstance(player, _Silent)
        self.current = player
        self._on_change()
        if isinstance(player, _Silent):
            self._emit(ErrorEvent(messages.no_output(player.reason), Source.AUDIO_OUTPUT))
        else:
            # Not part of the Player protocol: only players on a real device can lose it.
            listeners = getattr(player, "on_error", None)
            if isinstance(listeners, list):
                listeners.append(functools.partial(self._lost, player))
        return player

    async def open_quietly(self, settings: Settings) -> Player:
        """As ``open`` but without messages or status (for a voice preview beside a reply)."""
        try:
            player = self._factory(settings)
            await player.start()
            return player
        except Exception as exc:
            log.warning("audio output unavailable: %s", exc)
            silent = _Silent(exc)
            await silent.start()
            return silent

    def _lost(self, player: Player, message: str) -> None:
        if player is not self.current:
            log.info("a replaced audio output stopped (%s); its successor plays", message)
            return
        now = self._clock.now()
        self._held = self._lost_at is not None and now - self._lost_at < FLAPPING_SECONDS
        self._told = self._told and self._held
        self._lost_at = now
        self.ok = False
        self._on_change()
        self._emit(ErrorEvent(messages.output_lost(message), Source.AUDIO_OUTPUT))
        self._on_lost(player)


class _Silent(VirtualPlayer):
    """Nothing to hear: replies "play" as fast as they are made, so text is not held back."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(pace="fast")
        self.reason = reason
