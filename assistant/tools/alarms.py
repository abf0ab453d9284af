"""Timers and reminders that fire on time, also after a restart.

``AlarmBook`` keeps the pending alarms in one JSON file beside the conversation history,
rewritten atomically on every change, so an alarm set before the app closed fires when it is
due after the next start (or at once, marked *late*, if it fell due while the app was closed).
Due times are wall-clock (``wall()``, seconds since the epoch); waiting is done on the injected
``Clock``, and a wake-up that comes early (the machine slept, the clock was set) waits again.

Firing removes the alarm from the file first, then calls ``on_fire``: the app rings a chime,
speaks the alarm's line and shows a desktop notification.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from assistant.clock import SYSTEM_CLOCK, Clock, Timer
from assistant.config import atomic_write_bytes
from assistant.tools.grounding import duration_grounded
from assistant.tools.registry import Safety, ToolRegistry, parameters

log = logging.getLogger(__name__)

AlarmKind = Literal["timer", "reminder"]
#: Alarms more than this late (the app was closed when they fell due) are marked late.
LATE_AFTER = 60.0


@dataclass(slots=True)
class Alarm:
    id: str
    kind: AlarmKind
    #: Wall-clock due time, seconds since the epoch.
    due: float
    #: The timer's name ("tea") or the reminder's text ("call mom").
    label: str
    created: float
    #: A timer's length in seconds (None for a reminder).
    seconds: float | None = None
    #: Set when it fires: it fell due while nothing was running.
    late: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alarm:
        return cls(
            id=str(data["id"]),
            kind="reminder" if data.get("kind") == "reminder" else "timer",
            due=float(data["due"]),
            label=str(data.get("label", "")),
            created=float(data.get("created", 0.0)),
            seconds=float(data["seconds"]) if data.get("seconds") is not None else None,
        )


class AlarmBook:
    """Pending timers and reminders (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        wall: Callable[[], float] = time.time,
        on_fire: Callable[[Alarm], None] | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.wall = wall
        self.on_fire: list[Callable[[Alarm], None]] = [on_fire] if on_fire else []
        self._alarms: dict[str, Alarm] = {}
        self._timers: dict[str, Timer] = {}
        self._started = False
        #: Set when the file could not be read: say this to the user.
        self.notice: str | None = None
        self._load()

    # ------------------------------------------------------------------------------ storage

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            alarms = [Alarm.from_json(a) for a in data.get("alarms", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            self.path.replace(aside)
            self.notice = f"The timers file was damaged ({exc}); it was kept as {aside.name}."
            return
        self._alarms = {a.id: a for a in alarms}

    def _save(self) -> None:
        alarms = [asdict(a) for a in sorted(self._alarms.values(), key=lambda a: a.due)]
        for a in alarms:
            a.pop("late", None)
        data = json.dumps({"version": 1, "alarms": alarms}, ensure_ascii=False, indent=1)
        atomic_write_bytes(self.path, data.encode("utf-8"))

    # ----------------------------------------------------------------------------- running

    def start(self) -> None:
        """Schedule every stored alarm (on the running loop). Idempotent."""
        self._started = True
        for alarm in list(self._alarms.values()):
            self._schedule(alarm)

    def close(self) -> None:
        """Stop waiting (the alarms stay stored)."""
        self._started = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _schedule(self, alarm: Alarm) -> None:
        if not self._started or alarm.id in self._timers:
            return
        delay = max(0.0, alarm.due - self.wall())
        self._timers[alarm.id] = self.clock.call_later(delay, lambda: self._wake(alarm.id))

    def _wake(self, alarm_id: str) -> None:
        self._timers.pop(alarm_id, None)
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            return
        if self.wall() < alarm.due - 0.05:
            self._schedule(alarm)  # woke early: the wall clock moved
            return
        alarm.late = self.wall() - alarm.due > LATE_AFTER
        del self._alarms[alarm_id]
        self._save_quietly()
        for listener in list(self.on_fire):
            try:
                listener(alarm)
            except Exception:
                log.exception("an alarm listener failed")

    def _save_quietly(self) -> None:
        try:
            self._save()
        except OSError as exc:
            log.warning("could not save the timers: %s", exc)

    # ---------------------------------------------------------------------------- commands

    def add(self, kind: AlarmKind, due: float, label: str, seconds: float | None = None) -> Alarm:
        alarm = Alarm(uuid.uuid4().hex[:8], kind, due, label.strip(), self.wall(), seconds)
        self._alarms[alarm.id] = alarm
        self._save()
        self._schedule(alarm)
        return alarm

    def cancel(self, label: str = "") -> list[Alarm]:
        """Cancel the alarms whose label contains ``label``; with none given, the next one due."""
        pending = self.pending()
        wanted = label.strip().lower()
        if wanted:
            gone = [a for a in pending if wanted in a.label.lower()]
        else:
            gone = pending[:1]
        for alarm in gone:
            del self._alarms[alarm.id]
            timer = self._timers.pop(alarm.id, None)
            if timer is not None:
                timer.cancel()
        if gone:
            self._save()
        return gone

    def pending(self) -> list[Alarm]:
        """Every alarm not yet fired, soonest first."""
        return sorted(self._alarms.values(), key=lambda a: a.due)


# ----------------------------------------------------------------------------------- the tools

_CLOCK_TIME = re.compile(
    r"^\s*(\d{1,2})(?:[:.h](\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?\s*$", re.IGNORECASE
)


def parse_time_of_day(text: str, now: dt.datetime) -> dt.datetime:
    """The next moment at a time of day: "18:30", "6:30 pm", "6 PM", "7h15", or ISO."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
        return when if when.tzinfo else when.replace(tzinfo=now.tzinfo)
    except ValueError:
        pass
    m = _CLOCK_TIME.match(text)
    if m is None:
        raise ValueError(f"cannot read the time {text!r}; use e.g. 18:30 or 6:30 pm")
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    meridiem = (m.group(3) or "").lower().replace(".", "")
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day")
    when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return when if when > now else when + dt.timedelta(days=1)


def spoken_duration(seconds: float) -> str:
    """5400 → "1 hour 30 minutes"."""
    total = round(seconds)
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return " ".join(parts) or "0 seconds"


def _clock_text(when: float) -> str:
    return dt.datetime.fromtimestamp(when).astimezone().strftime("%H:%M")


def register_alarm_tools(registry: ToolRegistry, book: AlarmBook) -> None:
    """Timer and reminder tools over ``book``. They run on the event loop (the book schedules
    on the loop's clock), and setting or cancelling asks the user first."""

    def local_now() -> dt.datetime:
        return dt.datetime.fromtimestamp(book.wall()).astimezone()

    def due_of(at: str = "", in_minutes: float | None = None) -> float:
        if in_minutes is not None and in_minutes > 0:
            return book.wall() + float(in_minutes) * 60.0
        if at:
            return parse_time_of_day(at, local_now()).timestamp()
        raise ValueError("say when: a time of day (at) or a delay in minutes (in_minutes)")

    async def set_timer(seconds: float, label: str = "") -> str:
        if seconds <= 0:
            raise ValueError("the duration must be positive")
        alarm = book.add("timer", book.wall() + float(seconds), label, seconds=float(seconds))
        name = f" {alarm.label}" if alarm.label else ""
        return f"A{name} timer for {spoken_duration(seconds)} is running; it ends at " + (
            f"{_clock_text(alarm.due)}."
        )

    def describe_timer(args: Any) -> str:
        label = str(args.get("label") or "").strip()
        name = f" {label}" if label else ""
        return f"set a{name} timer for {spoken_duration(float(args.get('seconds', 0)))}"

    async def set_reminder(text: str, at: str = "", in_minutes: float | None = None) -> str:
        alarm = book.add("reminder", due_of(at, in_minutes), text)
        return f"Reminder set for {_clock_text(alarm.due)}: {alarm.label}."

    def describe_reminder(args: Any) -> str:
        due = due_of(str(args.get("at") or ""), args.get("in_minutes"))
        return f"remind you at {_clock_text(due)} to {args.get('text', '')}".rstrip()

    async def list_timers() -> str:
        pending = book.pending()
        if not pending:
            return "No timers or reminders are pending."
        now = book.wall()
        lines = []
        for a in pending:
            left = spoken_duration(max(0.0, a.due - now))
            what = f"timer {a.label}".strip() if a.kind == "timer" else f"reminder '{a.label}'"
            lines.append(f"{what}: at {_clock_text(a.due)}, in {left}")
        return "; ".join(lines)

    async def cancel_timer(label: str = "") -> str:
        gone = book.cancel(label)
        if not gone:
            return "There was nothing to cancel."
        return "Cancelled: " + ", ".join(
            f"{a.kind} {a.label}".strip() + f" (due {_clock_text(a.due)})" for a in gone
        )

    def describe_cancel(args: Any) -> str:
        label = str(args.get("label") or "").strip()
        return f"cancel the {label} timer" if label else "cancel the next timer"

    registry.register(
        "set_timer",
        "Start a countdown timer that rings when it ends.",
        parameters(
            ("seconds",),
            seconds={"type": "number", "description": "length in seconds"},
            label={"type": "string", "description": "optional name, e.g. tea"},
        ),
        set_timer,
        safety=Safety.ADDITIVE,
        title="timer",
        describe=describe_timer,
        grounded=duration_grounded,
    )
    registry.register(
        "set_reminder",
        "Remind the user of something at a time of day (at, e.g. 18:30) or after a delay "
        "(in_minutes).",
        parameters(
            ("text",),
            text={"type": "string", "description": "what to remind of"},
            at={"type": "string", "description": "time of day, e.g. 18:30"},
            in_minutes={"type": "number"},
        ),
        set_reminder,
        safety=Safety.ADDITIVE,
        title="reminders",
        describe=describe_reminder,
    )
    registry.register(
        "list_timers",
        "List the pending timers and reminders.",
        parameters(),
        list_timers,
        title="timers",
    )
    registry.register(
        "cancel_timer",
        "Cancel a pending timer or reminder by its name (the next one if none is given).",
        parameters(label={"type": "string"}),
        cancel_timer,
        safety=Safety.DESTRUCTIVE,
        title="timers",
        describe=describe_cancel,
    )


def alarm_line(alarm: Alarm, language: str) -> str:
    """What the assistant says when ``alarm`` fires."""
    from assistant.tools.phrases import phrases

    p = phrases(language)
    if alarm.kind == "reminder":
        return p.reminder.format(label=alarm.label)
    return p.timer_done_label.format(label=alarm.label) if alarm.label else p.timer_done
