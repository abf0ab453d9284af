"""The past conversations beside the chat: search, open (continue), rename, export, delete.

Every action is a call on the ``Assistant``; the list redraws from its events. Deleting asks the
window (``deleted``) to offer Undo rather than asking for confirmation first.

Keys in the list: Enter opens, F2 renames, Delete deletes; Down in the search field moves to
the list, Esc leaves the search field.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QPoint, QSize, Qt
from PySide6.QtCore import Signal as QtSignal
from PySide6.QtGui import QAction, QFont, QKeyEvent, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from assistant.app import Assistant
from assistant.events import AppEvent, ConversationLoaded, ConversationsChanged, TurnFinished
from assistant.history import ConversationSummary
from ui import theme
from ui.panels import titled_column
from ui.resources import icon

ID_ROLE = Qt.ItemDataRole.UserRole
DETAIL_ROLE = Qt.ItemDataRole.UserRole + 1
EXPORT_FILTERS = "Markdown (*.md);;JSON with the latency timelines (*.json)"


def when(seconds: float, now: float | None = None) -> str:
    """A short, friendly date: the time today, the weekday this week, else the date."""
    now = time.time() if now is None else now
    then, today = time.localtime(seconds), time.localtime(now)
    if then.tm_year == today.tm_year and then.tm_yday == today.tm_yday:
        return time.strftime("%H:%M", then)
    if 0 <= now - seconds < 6 * 86400:
        return time.strftime("%a %H:%M", then)
    return time.strftime("%d %b %Y", then)


def detail(summary: ConversationSummary, now: float | None = None) -> str:
    turns = "empty" if summary.turns == 0 else f"{summary.turns} turn{'s' * (summary.turns != 1)}"
    return f"{when(summary.updated, now)} · {turns}"


class _TwoLines(QStyledItemDelegate):
    """The title, and under it when and how long (the editor edits the title only)."""

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        line = option.fontMetrics.height()
        return QSize(200, 2 * line + 14)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        self.initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget is not None else None
        text, option.text = option.text, ""
        if style is not None:  # background, selection and focus, without the text
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, widget)
        rect = option.rect.adjusted(10, 6, -8, -6)
        line = option.fontMetrics.height()
        painter.save()
        painter.setFont(option.font)
        painter.setPen(theme.TEXT)
        title = option.fontMetrics.elidedText(text, Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect.adjusted(0, 0, 0, -line), Qt.AlignmentFlag.AlignLeft, title)
        small = QFont(option.font)
        small.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.85))
        small.setBold(False)
        painter.setFont(small)
        painter.setPen(theme.TEXT_SECONDARY)
        below = rect.adjusted(0, line + 2, 0, 0)
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, str(index.data(DETAIL_ROLE)))
        painter.restore()


class ConversationList(QFrame):
    """Past conversations, the most recent first; the current one is in bold."""

    #: (what was deleted, whether it was the current conversation): the window offers Undo.
    deleted = QtSignal(object, bool)

    def __init__(self, assistant: Assistant, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.assistant = assistant
        self.setObjectName("conversationList")
        self._summaries: dict[str, ConversationSummary] = {}
        self._filling = False
        layout, _header = titled_column(self, "Conversations", (12, 14, 12, 12))
        self.search = QLineEdit()
        self.search.setObjectName("conversationSearch")
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.addAction(icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.search.setAccessibleName("Search conversations")
        self.search.setAccessibleDescription(
            "Shows the conversations whose title or words contain every word typed here"
        )
        self.search.textChanged.connect(lambda _t: self.refresh())
        self.search.installEventFilter(self)
        layout.addWidget(self.search)
        self.list = QListWidget()
        self.list.setObjectName("conversationItems")
        self.list.setItemDelegate(_TwoLines(self.list))
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setAccessibleName("Past conversations")
        self.list.setAccessibleDescription(
            "Enter continues the selected conversation, F2 renames it, Delete deletes it"
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(lambda item: self.open(item.data(ID_ROLE)))
        self.list.itemChanged.connect(self._renamed)
        self.list.installEventFilter(self)
        layout.addWidget(self.list, 1)
        self.empty_label = QLabel("Past conversations appear here.")
        self.empty_label.setObjectName("panelCaption")
        self.empty_label.setWordWrap(True)
        layout.addWidget(self.empty_label)
        self._actions()

    # ----------------------------------------------------------------------------- contents

    def on_event(self, event: AppEvent) -> None:
        match event:
            case ConversationsChanged() | ConversationLoaded() | TurnFinished():
                self.refresh()

    def refresh(self) -> None:
        """Redraw from the assistant's list, keeping the selection where it can."""
        chosen = self.selected_id()
        found = self.assistant.conversations(self.search.text())
        self._summaries = {s.id: s for s in found}
        current = self.assistant.conversation_id
        self._filling = True
        try:
            self.list.clear()
            now = time.time()
            for summary in found:
                item = QListWidgetItem(summary.title)
                item.setData(ID_ROLE, summary.id)
                item.setData(DETAIL_ROLE, detail(summary, now))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                item.setToolTip(f"{summary.title}\n{detail(summary, now)}")
                if summary.id == current:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.list.addItem(item)
                if summary.id == (chosen or current):
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False
        searching = bool(self.search.text().strip())
        self.empty_label.setText(
            "No conversation matches." if searching else "Past conversations appear here."
        )
        self.empty_label.setVisible(not found)

    def ids(self) -> list[str]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return str(item.data(ID_ROLE)) if item is not None else None

    def select(self, conversation_id: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(ID_ROLE) == conversation_id:
                self.list.setCurrentRow(i)
                return

    # ------------------------------------------------------------------------------ actions

    def open(self, conversation_id: str | None = None) -> bool:
        """Continue a conversation (the selected one by default)."""
        chosen = conversation_id or self.selected_id()
        return bool(chosen) and self.assistant.open_conversation(str(chosen))

    def start_rename(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.list.editItem(item)

    def rename(self, conversation_id: str, title: str) -> bool:
        return self.assistant.rename_conversation(conversation_id, title)

    def delete(self, conversation_id: str | None = None) -> ConversationSummary | None:
        """Delete a conversation (the selected one by default); the window offers Undo."""
        chosen = conversation_id or self.selected_id()
        if not chosen:
            return None
        was_current = chosen == self.assistant.conversation_id
        row = self.list.currentRow()
        summary = self.assistant.delete_conversation(chosen)
        if summary is not None:
            self.list.setCurrentRow(min(row, self.list.count() - 1))
            self.deleted.emit(summary, was_current)
        return summary

    def export(self, path: Path, conversation_id: str | None = None) -> bool:
        chosen = conversation_id or self.selected_id()
        return bool(chosen) and self.assistant.export_conversation(str(chosen), path)

    def export_dialog(self, suffix: str = ".md") -> None:
        chosen = self.selected_id()
        summary = self._summaries.get(chosen or "")
        if summary is None:
            return
        stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in summary.title).strip()
        path, chosen_filter = QFileDialog.getSaveFileName(
            self,
            "Export conversation",
            str(Path.home() / f"{stem or 'conversation'}{suffix}"),
            EXPORT_FILTERS if suffix == ".md" else ";;".join(reversed(EXPORT_FILTERS.split(";;"))),
        )
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() not in (".md", ".json"):
            target = target.with_suffix(".json" if "JSON" in chosen_filter else ".md")
        self.export(target, summary.id)

    def _renamed(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        conversation_id = str(item.data(ID_ROLE))
        summary = self._summaries.get(conversation_id)
        if summary is not None and item.text().strip() != summary.title:
            self.rename(conversation_id, item.text())
        self.refresh()

    def _actions(self) -> None:
        """Keyboard actions of the list (also in its context menu)."""
        self.open_action = QAction("Continue this conversation", self.list)
        self.open_action.triggered.connect(lambda: self.open())
        self.rename_action = QAction("Rename", self.list)
        self.rename_action.setShortcut("F2")
        self.rename_action.triggered.connect(self.start_rename)
        self.delete_action = QAction("Delete", self.list)
        self.delete_action.setShortcut("Del")
        self.delete_action.triggered.connect(lambda: self.delete())
        self.markdown_action = QAction("Export as Markdown…", self.list)
        self.markdown_action.triggered.connect(lambda: self.export_dialog(".md"))
        self.json_action = QAction("Export as JSON with timelines…", self.list)
        self.json_action.triggered.connect(lambda: self.export_dialog(".json"))
        for action in (self.rename_action, self.delete_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            self.list.addAction(action)

    def _menu(self, pos: QPoint) -> None:
        if self.list.itemAt(pos) is None:
            return
        menu = QMenu(self)
        for action in (self.open_action, self.rename_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.markdown_action)
        menu.addAction(self.json_action)
        menu.addSeparator()
        menu.addAction(self.delete_action)
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            key = event.key()
            if watched is self.search and key == Qt.Key.Key_Down and self.list.count():
                self.list.setFocus(Qt.FocusReason.TabFocusReason)
                if self.list.currentRow() < 0:
                    self.list.setCurrentRow(0)
                return True
            if watched is self.list and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if self.list.state() != QAbstractItemView.State.EditingState:
                    self.open()
                    return True
        return super().eventFilter(watched, event)
