"""The microphone's audio processing in the app: whether echo cancellation runs, and on what.

``EchoControl`` decides from the settings (``echo_cancellation`` on/auto/off: auto cancels
unless the output device looks like a headset; ``noise_suppression``) and from whether the
WebRTC wheel loads here, owns the ``EchoCanceller``, hangs its far-end tap on the session's
player and its processor on the microphone, and tells the conversation whether the assistant's
voice may still come back uncancelled (``uncertain``, see ``UserTurnTracker``).

Echo exists only between a real microphone (``MicrophoneCapture``) and a player that plays in
real time; files, pushed frames and silent players have none, and nothing is uncertain then. A
new output device or sample rate, or a new microphone, is a new echo path: the processor is
re-created (it converges again) while the conversation goes on. When the wheel is missing and
the assistant talks through speakers, barge-in stays strict (words needed), and the user is
told once that headphones are recommended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from assistant.app import messages
from assistant.audio.capture import AudioSource, MicrophoneCapture
from assistant.audio.devices import looks_like_headset
from assistant.audio.echo import EchoCanceller, processing_available
from assistant.audio.player import BufferedPlayer, DevicePlayer, Player, RenderTap, VirtualPlayer
from assistant.config import Settings
from assistant.events import AppEvent, EchoStatus, Notice, Source

log = logging.getLogger(__name__)

CancellerFactory = Callable[[bool, bool], EchoCanceller]


def _default_canceller(echo_cancellation: bool, noise_suppression: bool) -> EchoCanceller:
    return EchoCanceller(echo_cancellation=echo_cancellation, noise_suppression=noise_suppression)


@dataclass(frozen=True, slots=True)
class EchoPlan:
    """What the settings ask for on this output device."""

    cancel: bool
    noise_suppression: bool
    #: Why echo cancellation is off, for the window ("" when it is on).
    reason: str = ""


def plan(settings: Settings, output_device_name: str) -> EchoPlan:
    """Echo cancellation on, off, or on unless the output looks like a headset ("auto")."""
    mode = settings.echo_cancellation
    if mode == "off":
        return EchoPlan(False, settings.noise_suppression, "turned off in Settings")
    if mode == "auto" and looks_like_headset(output_device_name):
        reason = f"not needed with a headset ({output_device_name})"
        return EchoPlan(False, settings.noise_suppression, reason)
    return EchoPlan(True, settings.noise_suppression)


class EchoControl:
    """See the module docstring. All methods run on the loop thread.

    ``on_change`` runs when ``uncertain`` or the status changed; ``emit`` receives the status
    (``EchoStatus``) and the one-time notice. ``device_name`` tells the output device's name
    (for "auto"); ``available`` whether the processing wheel loads.
    """

    def __init__(
        self,
        *,
        emit: Callable[[AppEvent], None],
        on_change: Callable[[], None] = lambda: None,
        available: Callable[[], bool] = processing_available,
        factory: CancellerFactory = _default_canceller,
    ) -> None:
        self._emit = emit
        self._on_change = on_change
        self._available = available
        self._factory = factory
        self._settings: Settings | None = None
        self._output_name = ""
        self._plan: EchoPlan | None = None
        self._unavailable: str | None = None
        self._told = False
        self.canceller: EchoCanceller | None = None
        self._player: BufferedPlayer | None = None
        self._tap: RenderTap | None = None
        self._output_key: tuple[object, ...] | None = None
        self._source: MicrophoneCapture | None = None
        self._logged_fallbacks: set[str] = set()
        self._last: tuple[bool, EchoStatus] | None = None

    # ------------------------------------------------------------------------------ settings

    def configure(self, settings: Settings) -> None:
        """Decide from ``settings`` (again): a changed plan re-creates the processor."""
        self._settings = settings
        self._rebuild()

    def _rebuild(self) -> None:
        if self._settings is None:
            return
        new = plan(self._settings, self._output_name)
        if new == self._plan:
            return
        self._plan = new
        wanted = new.cancel or new.noise_suppression
        self.canceller = None
        self._unavailable = None
        if wanted and self._available():
            try:
                self.canceller = self._factory(new.cancel, new.noise_suppression)
            except Exception as exc:
                log.warning("audio processing cannot start: %s", exc)
                self._unavailable = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        elif wanted:
            self._unavailable = "the WebRTC audio processing package is missing"
        if self._unavailable is not None and new.cancel and not self._told:
            self._told = True
            self._emit(Notice(messages.echo_unavailable(self._unavailable), Source.AUDIO))
        # Hang the new processor on what is playing and capturing now.
        player, source = self._player, self._source
        self._player, self._output_key = None, None
        if player is not None:
            self._remove_tap(player)
            self._attach_player(player)
        if source is not None:
            source.processor = None
            self.attach_input(source)
        self._changed()

    # ---------------------------------------------------------------------------- attaching

    def attach_output(self, player: Player) -> None:
        """The session's player (the far end): its render path feeds the canceller. Its
        device decides "auto"."""
        self.detach_output()
        name = player.device_name if isinstance(player, DevicePlayer) else ""
        if name != self._output_name:
            self._output_name = name
            self._rebuild()
        self._attach_player(player)
        self._changed()

    def _attach_player(self, player: Player) -> None:
        if not _plays_aloud(player):
            return
        assert isinstance(player, BufferedPlayer)
        self._player = player
        canceller = self.canceller
        if canceller is not None and self._plan is not None and self._plan.cancel:
            key = (type(player).__name__, getattr(player, "device", None), player.rate)
            if self._output_key is not None and key != self._output_key:
                canceller.reset()  # another device or rate: another echo path
            self._output_key = key
            self._tap = canceller.tap.rendered
            player.taps.append(self._tap)

    def detach_output(self) -> None:
        player, self._player = self._player, None
        if player is not None:
            self._remove_tap(player)

    def _remove_tap(self, player: BufferedPlayer) -> None:
        tap, self._tap = self._tap, None
        if tap is not None and tap in player.taps:
            player.taps.remove(tap)

    def attach_input(self, source: AudioSource | None) -> None:
        """The source about to start: a microphone gets the processor (a new one is a new echo
        path); other sources have no echo."""
        self._source = source if isinstance(source, MicrophoneCapture) else None
        canceller = self.canceller
        if self._source is not None and canceller is not None:
            if canceller.stats.processed_seconds > 0:
                canceller.reset()
            self._source.processor = canceller
        self._changed()

    def detach_input(self) -> None:
        self._source = None
        self._changed()

    # ---------------------------------------------------------------------------------- state

    @property
    def echo_possible(self) -> bool:
        """A microphone is capturing while a player plays aloud."""
        return self._source is not None and self._player is not None

    @property
    def cancelling(self) -> bool:
        return (
            self.echo_possible
            and self._plan is not None
            and self._plan.cancel
            and self.canceller is not None
            and self.canceller.echo_cancellation
        )

    @property
    def uncertain(self) -> bool:
        """The assistant's voice may come back uncancelled: barge-in needs words."""
        if not self.echo_possible or self._plan is None or not self._plan.cancel:
            return False
        if self.canceller is None:
            return True  # speakers without echo cancellation
        return self.canceller.uncertain

    def status(self) -> EchoStatus:
        canceller = self.canceller
        noise = self._source is not None and canceller is not None and canceller.noise_suppression
        if self.cancelling and canceller is not None:
            if canceller.uncertain:
                detail = "Echo cancellation is learning the room"
            else:
                detail = "Echo cancellation is on: Parley does not hear itself"
            return EchoStatus(True, not canceller.uncertain, noise, detail)
        cancel = self._plan is not None and self._plan.cancel
        if self._unavailable is not None and cancel:
            detail = f"Echo cancellation is unavailable: {self._unavailable}"
        elif self._plan is not None and not cancel:
            detail = f"Echo cancellation is off: {self._plan.reason}"
        else:
            detail = "No echo: nothing plays aloud while a microphone captures"
        return EchoStatus(False, False, noise, detail)

    def poll(self) -> None:
        """After each captured frame: report a change, log a device without timestamps."""
        self._log_fallbacks()
        if self._last is None or self._last[0] != self.uncertain:
            self._changed()

    def _changed(self) -> None:
        status = self.status()
        current = (self.uncertain, status)
        last = self._last
        if last is not None and last[0] == current[0] and _same(last[1], status):
            return
        self._last = current
        self._emit(status)
        self._on_change()

    def _log_fallbacks(self) -> None:
        delays = []
        if isinstance(self._player, DevicePlayer):
            delays.append(self._player.delay)
        if self._source is not None:
            delays.append(self._source.delay)
        for delay in delays:
            reason = delay.fallback_reason
            if reason is not None and delay.kind not in self._logged_fallbacks:
                self._logged_fallbacks.add(delay.kind)
                log.warning(
                    "audio %s timing: %s; assuming a fixed %.0f ms (echo cancellation finds "
                    "the rest of the delay itself)",
                    delay.kind,
                    reason,
                    delay.nominal * 1000.0,
                )


def _plays_aloud(player: Player) -> bool:
    """A player whose blocks reach a listener in real time (so they can echo)."""
    if isinstance(player, DevicePlayer):
        return True
    return isinstance(player, VirtualPlayer) and player.pace == "realtime"


def _same(a: EchoStatus, b: EchoStatus) -> bool:
    return (a.cancelling, a.settled, a.noise_suppression, a.detail) == (
        b.cancelling,
        b.settled,
        b.noise_suppression,
        b.detail,
    )
