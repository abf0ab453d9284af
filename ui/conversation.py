"""The conversation as chat bubbles: live partial transcripts, replies as they are spoken.

The assistant's bubble shows what has been heard in full colour and what is generated but not
yet spoken dimmed; an interrupted reply ends at the point the user cut in, with a marker.
A reply withdrawn unheard because the user went on talking leaves no bubble of its own: its words
move into the next turn's bubble.

Tools show in the reply's meta line ("used calculator"); the filler said while a slow tool ran is
shown lighter, before the answer; a reply asking "Shall I go ahead?" gets Yes / No chips until
the question is settled; an alarm that speaks gets a bubble of its own.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from assistant.events import (
    Announcement,
    AppEvent,
    AssistantText,
    ConfirmationRequested,
    ConfirmationResolved,
    ConversationLoaded,
    FillerSpoken,
    FinalTranscript,
    PartialTranscript,
    TimelineUpdated,
    ToolCalled,
    TurnFinished,
    TurnWithdrawn,
)
from assistant.history import TurnRecord
from assistant.timeline import typed
from ui import theme
from ui.widgets import styled_box

#: Bubbles take at most this share of the view's width.
BUBBLE_WIDTH = 0.74
#: A typed message longer than this shows its beginning only (copying takes it all).
LONG_MESSAGE_SHOWN = 600
_PUNCTUATION = ".,!?;:\"'()[]{}*_`~#>-…“”‘’«»"


def split_heard(spoken: str, generated: str) -> tuple[str, str]:
    """Split ``generated`` into the part covered by ``spoken`` and the rest.

    ``spoken`` is the text the speech engine was given (markdown stripped, pieces re-joined), so
    it is matched word by word rather than as a prefix; a word that cannot be found nearby is
    skipped.
    """
    if not generated:
        return spoken, ""
    cursor = 0
    for word in spoken.split():
        for candidate in (word, word.strip(_PUNCTUATION)):
            if not candidate:
                continue
            index = generated.find(candidate, cursor)
            if 0 <= index <= cursor + max(40, 4 * len(candidate)):
                cursor = index + len(candidate)
                break
    # Keep punctuation that directly follows the last heard word with it.
    while (
        cursor < len(generated) and generated[cursor] in _PUNCTUATION and generated[cursor] != "-"
    ):
        cursor += 1
    return generated[:cursor], generated[cursor:]


def _text(value: str) -> str:
    return html.escape(value).replace("\n", "<br>")


def render_filler(filler: str) -> str:
    """HTML of the filler line: lighter and italic, apart from the answer."""
    if not filler:
        return ""
    return f'<i><span style="color:{theme.FILLER_HTML}">{_text(filler)}</span></i><br>'


def render_live(spoken: str, generated: str, filler: str = "") -> str:
    """HTML of a reply in progress: heard part normal, the rest dimmed."""
    heard, rest = split_heard(spoken, generated)
    if not heard and not rest:
        return f'{render_filler(filler)}<span style="color:{theme.UNSPOKEN_HTML}">…</span>'
    return (
        f"{render_filler(filler)}{_text(heard)}"
        f'<span style="color:{theme.UNSPOKEN_HTML}">{_text(rest)}</span>'
    )


def render_finished(record: TurnRecord) -> str:
    """HTML of a finished reply: as heard, cut and marked when it was interrupted."""
    filler = record.timeline.get("notes", {}).get("filler")
    parts: list[str] = [render_filler(filler)] if isinstance(filler, str) else []
    if record.interrupted:
        heard = record.assistant_text
        _, rest = split_heard(heard, record.generated_text) if record.generated_text else ("", "")
        marker = "— interrupted" if heard else "— interrupted before it was spoken"
        parts.append(_text(heard))
        parts.append(
            f' <span style="color:{theme.INTERRUPTED_HTML}; font-weight:600">{marker}</span>'
        )
        if rest.strip():
            parts.append(
                ' <span style="color:#BCC1CA; text-decoration:line-through">'
                f"{_text(rest.strip())}</span>"
            )
    else:
        parts.append(_text(record.assistant_text or record.generated_text))
    if record.error:
        prefix = "<br>" if "".join(parts) else ""
        parts.append(
            f'{prefix}<span style="color:{theme.INTERRUPTED_HTML}">⚠ {_text(record.error)}</span>'
        )
    return "".join(parts)


def render_question(text: str) -> str:
    """HTML of the user's words; a very long typed message shows only its beginning."""
    if len(text) <= LONG_MESSAGE_SHOWN * 2:
        return _text(text)
    shown = text[:LONG_MESSAGE_SHOWN].rsplit(" ", 1)[0]
    rest = f"… ({len(text):,} characters in all)"
    return f'{_text(shown)}<span style="color:rgba(255,255,255,0.78)"> {rest}</span>'


def render_partial(text: str, carried: str = "") -> str:
    """HTML of words still being recognised, after any ``carried`` words already settled."""
    live = f'<i><span style="color:rgba(255,255,255,0.78)">{_text(text)} …</span></i>'
    return f"{_text(carried)} {live}" if carried else live


def empty_hint(turn_mode: str, hotkey: str) -> str:
    """What the empty conversation says to do, for the current way of taking turns."""
    if turn_mode == "vad":
        return (
            "Just start speaking — Parley listens and answers when you pause. "
            "Or type a message below."
        )
    return (
        f"Hold <b>{html.escape(hotkey)}</b> (or the microphone button) and speak — "
        "or type a message below."
    )


class Bubble(QFrame):
    """One message: selectable rich text and a small meta line."""

    PADDING = 14

    def __init__(self, role: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.setObjectName("userBubble" if role == "user" else "assistantBubble")
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Minimum)
        layout = QVBoxLayout(self)
        self._layout = layout
        layout.setContentsMargins(self.PADDING, 9, self.PADDING, 9)
        layout.setSpacing(3)
        self.label = QLabel()
        self.label.setObjectName("bubbleText")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.meta = QLabel()
        self.meta.setObjectName("bubbleMeta")
        self.meta.hide()
        layout.addWidget(self.label)
        layout.addWidget(self.meta)
        #: The plain text shown (for copying the conversation and for tests).
        self.plain = ""
        self.partial = False
        #: The confirmation chips, while a question is open.
        self.choices: QWidget | None = None

    def set_content(self, html_text: str, plain: str, *, partial: bool = False) -> None:
        self.label.setText(html_text)
        self.plain = plain
        self.partial = partial
        self.fit()

    def fit(self) -> None:
        """Size the text to its natural width, up to the bubble's maximum.

        A word-wrapped QLabel otherwise settles on a narrow column for long text.
        """
        room = max(80, self.maximumWidth() - 2 * self.PADDING)
        self.label.ensurePolished()  # measure with the stylesheet's font, not the default one
        document = QTextDocument()
        document.setDefaultFont(self.label.font())
        document.setHtml(self.label.text())
        document.setDocumentMargin(0)
        natural = math.ceil(document.idealWidth()) + 2
        self.label.setMinimumWidth(min(natural, room))

    def set_max_width(self, width: int) -> None:
        self.setMaximumWidth(width)
        self.fit()

    def set_meta(self, text: str) -> None:
        self.meta.setText(text)
        self.meta.setVisible(bool(text))

    def show_choices(self, on_choice: Callable[[bool], None]) -> None:
        """Yes / No chips under the text (a pending confirmation)."""
        self.hide_choices()
        row, layout = styled_box("confirmChips", QHBoxLayout, (0, 4, 0, 0), 8)
        for label, accept in (("Yes, go ahead", True), ("No", False)):
            chip = QPushButton(label)
            chip.setObjectName("confirmChip")
            chip.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            chip.clicked.connect(lambda _checked=False, a=accept: on_choice(a))
            layout.addWidget(chip)
        layout.addStretch(1)
        self._layout.addWidget(row)
        self.choices = row

    def hide_choices(self) -> None:
        row, self.choices = self.choices, None
        if row is not None:
            row.deleteLater()

    @property
    def html(self) -> str:
        return self.label.text()


@dataclass
class _Turn:
    row_user: QWidget | None = None
    user: Bubble | None = None
    row_assistant: QWidget | None = None
    assistant: Bubble | None = None
    finished: bool = False
    v2v_ms: float | None = None
    #: The question was typed: its delay is a reply time, not voice-to-voice.
    typed: bool = False
    tools: tuple[str, ...] = ()
    filler: str = ""
    interrupted: bool = False
    partial: str = ""  # the latest partial transcript, without carried words


class ConversationView(QScrollArea):
    """Scrolling list of bubbles that follows new text unless the user scrolled up.

    ``confirmed(bool)``: a confirmation chip was clicked. ``titles`` names a tool for the
    meta line ("calculate" → "calculator"); by default the name itself.
    """

    confirmed = Signal(bool)

    def __init__(
        self, parent: QWidget | None = None, *, titles: Callable[[str], str] | None = None
    ) -> None:
        super().__init__(parent)
        self._titles = titles or (lambda name: name.replace("_", " "))
        self._asking: int | None = None
        self.setObjectName("conversation")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        content, self._layout = styled_box("conversationContent", QVBoxLayout, (22, 18, 22, 18), 10)
        self._hotkey = "Space"
        self._turn_mode = "ptt"
        self._hint = QLabel(empty_hint(self._turn_mode, self._hotkey))
        self._hint.setObjectName("emptyHint")
        self._hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._hint.setWordWrap(True)
        self._layout.addStretch(1)
        self._layout.addWidget(self._hint)
        self._layout.addStretch(2)
        self.setWidget(content)
        self._turns: dict[int, _Turn] = {}
        #: (withdrawn turn, its words): they open the next turn's transcript.
        self._carry: tuple[int, str] | None = None
        self._follow = True
        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range_changed)
        bar.valueChanged.connect(self._on_scrolled)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    # ----------------------------------------------------------------------------- public API

    def on_event(self, event: AppEvent) -> None:
        """Follow the conversation as the assistant reports it."""
        match event:
            case PartialTranscript(turn_id=turn_id, text=text):
                self.on_partial(turn_id, text)
            case FinalTranscript(turn_id=turn_id, text=text):
                self.on_final(turn_id, text)
            case AssistantText(turn_id=turn_id, spoken=spoken, generated=generated):
                self.on_assistant_text(turn_id, spoken, generated)
            case ToolCalled(turn_id=turn_id, name=name, title=title):
                self.on_tool_called(turn_id, title or self._titles(name))
            case FillerSpoken(turn_id=turn_id, text=text):
                self.on_filler(turn_id, text)
            case ConfirmationRequested(turn_id=turn_id):
                self.on_confirmation_requested(turn_id)
            case ConfirmationResolved():
                self.on_confirmation_resolved()
            case Announcement(turn_id=turn_id, text=text):
                self.on_announcement(turn_id, text)
            case TimelineUpdated(turn_id=turn_id, timeline=timeline):
                self.on_timeline(turn_id, timeline)
            case TurnFinished(turn=record):
                self.on_turn_finished(record)
            case TurnWithdrawn(turn_id=turn_id, user_text=text):
                self.on_withdrawn(turn_id, text)
            case ConversationLoaded(turns=turns):
                self.load_turns(list(turns))

    def set_hotkey_name(self, name: str) -> None:
        self._hotkey = name
        self._hint.setText(empty_hint(self._turn_mode, self._hotkey))

    def set_turn_mode(self, mode: str) -> None:
        """``"ptt"`` (hold a key to talk) or ``"vad"`` (hands-free)."""
        self._turn_mode = mode
        self._hint.setText(empty_hint(self._turn_mode, self._hotkey))

    @property
    def hint_text(self) -> str:
        return self._hint.text()

    def clear(self) -> None:
        for turn in self._turns.values():
            for row in (turn.row_user, turn.row_assistant):
                if row is not None:
                    row.deleteLater()
        self._turns.clear()
        self._carry = None
        self._update_hint()

    def load_turns(self, turns: list[TurnRecord]) -> None:
        self.clear()
        for record in turns:
            self.on_final(record.turn_id, record.user_text)
            self.on_turn_finished(record)
        self._follow = True
        self._scroll_to_end()

    def on_partial(self, turn_id: int, text: str) -> None:
        if not text.strip():
            return
        turn = self._turn(turn_id)
        turn.partial = text
        self._show_partial(turn_id, turn)

    def on_final(self, turn_id: int, text: str) -> None:
        # The final transcript already includes words carried over from a withdrawn turn.
        if self._carry is not None and self._carry[0] < turn_id:
            self._remove(self._carry[0])
            self._carry = None
        turn = self._turn(turn_id)
        if not text.strip():
            self._remove(turn_id)  # nothing was understood: no bubble
            return
        bubble = self._user_bubble(turn)
        bubble.set_content(render_question(text), text)
        if not turn.finished:
            self._assistant_bubble(turn).set_content(render_live("", ""), "")

    def on_withdrawn(self, turn_id: int, user_text: str) -> None:
        """The reply to ``turn_id`` was dropped unheard; its words open the next turn."""
        turn = self._turn(turn_id)
        turn.finished = True  # no reply is coming for it
        self._remove_assistant(turn)
        self._carry = (turn_id, user_text.strip()) if user_text.strip() else None
        later = [t for t, other in self._turns.items() if t > turn_id and other.partial]
        if self._carry is None or later:
            # Nothing to carry, or the next turn is already being heard: it shows the words.
            self._remove(turn_id)
            for t in later:
                self._show_partial(t, self._turns[t])
            return
        self._user_bubble(turn).set_content(_text(user_text), user_text)

    def on_assistant_text(self, turn_id: int, spoken: str, generated: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is None or turn.finished:
            return  # a reply follows its final transcript; none means it was withdrawn
        bubble = self._assistant_bubble(turn)
        bubble.set_content(render_live(spoken, generated, turn.filler), generated)

    def on_tool_called(self, turn_id: int, title: str) -> None:
        turn = self._turn(turn_id)
        if title not in turn.tools:
            turn.tools = (*turn.tools, title)
        self._update_meta(turn)

    def on_filler(self, turn_id: int, text: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is None or turn.finished:
            return
        turn.filler = text
        self._assistant_bubble(turn).set_content(render_live("", "", text), "")

    def on_confirmation_requested(self, turn_id: int) -> None:
        """The reply of ``turn_id`` asked whether to go ahead: offer Yes / No under it."""
        self.on_confirmation_resolved()
        turn = self._turns.get(turn_id)
        if turn is None or turn.assistant is None:
            return
        self._asking = turn_id
        turn.assistant.show_choices(self.confirmed.emit)

    def on_confirmation_resolved(self) -> None:
        asking, self._asking = self._asking, None
        turn = self._turns.get(asking) if asking is not None else None
        if turn is not None and turn.assistant is not None:
            turn.assistant.hide_choices()

    def on_announcement(self, turn_id: int, text: str) -> None:
        """An alarm speaks: a reply of its own, with no question before it."""
        turn = self._turn(turn_id)
        turn.finished = True
        self._assistant_bubble(turn).set_content(f"⏰ {_text(text)}", text)

    def pending_choices(self) -> Bubble | None:
        """The bubble showing confirmation chips, if any."""
        turn = self._turns.get(self._asking) if self._asking is not None else None
        return turn.assistant if turn is not None else None

    def on_timeline(self, turn_id: int, timeline: dict[str, object]) -> None:
        turn = self._turns.get(turn_id)
        if turn is None:
            return
        value = timeline.get("voice_to_voice_ms")
        turn.v2v_ms = float(value) if isinstance(value, int | float) else None
        turn.typed = typed(timeline)
        self._update_meta(turn)

    def on_turn_finished(self, record: TurnRecord) -> None:
        turn = self._turn(record.turn_id)
        if turn.user is None and record.user_text:
            self._user_bubble(turn).set_content(render_question(record.user_text), record.user_text)
        turn.finished = True
        turn.interrupted = record.interrupted
        turn.tools = tuple(dict.fromkeys(self._titles(t.name) for t in record.tool_calls)) or (
            turn.tools
        )
        value = record.timeline.get("voice_to_voice_ms")
        turn.v2v_ms = float(value) if isinstance(value, int | float) else turn.v2v_ms
        turn.typed = typed(record.timeline) or turn.typed
        text = record.assistant_text or ("" if record.interrupted else record.generated_text)
        if text or record.interrupted or record.error:
            self._assistant_bubble(turn).set_content(render_finished(record), text)
        elif turn.assistant is not None:
            self._remove_assistant(turn)
        self._update_meta(turn)

    def user_bubble(self, turn_id: int) -> Bubble | None:
        turn = self._turns.get(turn_id)
        return turn.user if turn else None

    def assistant_bubble(self, turn_id: int) -> Bubble | None:
        turn = self._turns.get(turn_id)
        return turn.assistant if turn else None

    def turn_ids(self) -> list[int]:
        return list(self._turns)

    def plain_text(self) -> str:
        lines: list[str] = []
        for turn in self._turns.values():
            if turn.user is not None and turn.user.plain:
                lines.append(f"You: {turn.user.plain}")
            if turn.assistant is not None and turn.assistant.plain:
                cut = " [interrupted]" if turn.interrupted else ""
                lines.append(f"Parley: {turn.assistant.plain}{cut}")
        return "\n\n".join(lines)

    def at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 24

    # ------------------------------------------------------------------------------- internals

    def _turn(self, turn_id: int) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _Turn()
        return turn

    def _user_bubble(self, turn: _Turn) -> Bubble:
        if turn.user is None:
            turn.row_user, turn.user = self._add_row("user", before=turn.row_assistant)
        return turn.user

    def _assistant_bubble(self, turn: _Turn) -> Bubble:
        if turn.assistant is None:
            turn.row_assistant, turn.assistant = self._add_row("assistant")
        return turn.assistant

    def _add_row(self, role: str, before: QWidget | None = None) -> tuple[QWidget, Bubble]:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        bubble = Bubble(role)
        bubble.set_max_width(self._bubble_width())
        if role == "user":
            layout.addStretch(1)
            layout.addWidget(bubble)
        else:
            layout.addWidget(bubble)
            layout.addStretch(1)
        # Rows go before the trailing stretch (and before the hint, which hides anyway).
        index = self._layout.indexOf(before) if before is not None else self._layout.count() - 2
        self._layout.insertWidget(index, row)
        self._update_hint()
        return row, bubble

    def _remove(self, turn_id: int) -> None:
        turn = self._turns.pop(turn_id, None)
        if turn is None:
            return
        for row in (turn.row_user, turn.row_assistant):
            if row is not None:
                row.deleteLater()
        self._update_hint()

    def _remove_assistant(self, turn: _Turn) -> None:
        if turn.row_assistant is not None:
            turn.row_assistant.deleteLater()
        turn.row_assistant = turn.assistant = None

    def _show_partial(self, turn_id: int, turn: _Turn) -> None:
        """A partial transcript, after the words a withdrawn turn carried over (whose bubble
        it replaces)."""
        carried = ""
        if self._carry is not None and self._carry[0] < turn_id:
            self._remove(self._carry[0])
            carried = self._carry[1]
        plain = f"{carried} {turn.partial}".strip()
        self._user_bubble(turn).set_content(
            render_partial(turn.partial, carried), plain, partial=True
        )

    def _update_meta(self, turn: _Turn) -> None:
        if turn.assistant is None:
            return
        bits: list[str] = []
        if turn.tools:
            bits.append("used " + ", ".join(turn.tools))
        if turn.v2v_ms is not None:
            bits.append(f"{turn.v2v_ms:.0f} ms {'reply time' if turn.typed else 'voice-to-voice'}")
        turn.assistant.set_meta("  ·  ".join(bits))

    def _update_hint(self) -> None:
        self._hint.setVisible(not self._turns)

    def _bubble_width(self) -> int:
        return max(220, int(self.viewport().width() * BUBBLE_WIDTH))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        width = self._bubble_width()
        for turn in self._turns.values():
            for bubble in (turn.user, turn.assistant):
                if bubble is not None:
                    bubble.set_max_width(width)

    def _on_scrolled(self, _value: int) -> None:
        self._follow = self.at_bottom()

    def _on_range_changed(self, _low: int, _high: int) -> None:
        if self._follow:
            self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        copy_all = menu.addAction("Copy conversation")
        copy_all.setEnabled(bool(self._turns))
        chosen = menu.exec(self.mapToGlobal(pos))
        if chosen is copy_all:
            QGuiApplication.clipboard().setText(self.plain_text())
