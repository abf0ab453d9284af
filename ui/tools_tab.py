"""The settings dialog's Tools tab: whether tools are offered, which ones ask first, the MCP
servers (add, remove, enable, disable, and each one's status and tools), and structured output.

It edits a copy of the settings' ``tools`` and ``structured`` sections; ``apply_to`` writes
them into a ``Settings``. Server statuses come from the running assistant (``set_statuses``).
"""

from __future__ import annotations

import copy
import shlex

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant.config import McpServerSettings, Settings
from assistant.tools.mcp import ServerState, ServerStatus

CONFIRM_CHOICES = (
    ("changes", "Before any tool that changes something (timers, notes, …)"),
    ("destructive", "Only before tools that may change or delete what exists"),
    ("never", "Never ask"),
)
STATE_TEXT = {
    ServerState.STARTING: "starting…",
    ServerState.READY: "running",
    ServerState.FAILED: "failed",
    ServerState.STOPPED: "stopped",
    ServerState.DISABLED: "disabled",
}


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("fieldNote")
    label.setWordWrap(True)
    return label


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines → a dict (blank lines and lines without ``=`` are skipped)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            env[key.strip()] = value.strip()
    return env


class ToolsTab(QWidget):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._servers: dict[str, McpServerSettings] = copy.deepcopy(settings.tools.mcp_servers)
        self._statuses: dict[str, ServerStatus] = {}
        self._current: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 18, 18, 18)
        layout.setSpacing(12)

        self.enabled = QCheckBox("Let Parley use tools (clock, calculator, timers, notes, servers)")
        self.enabled.setChecked(settings.tools.enabled)
        layout.addWidget(self.enabled)
        confirm_row = QHBoxLayout()
        confirm_row.addWidget(QLabel("Ask “Shall I go ahead?”"))
        self.confirm = QComboBox()
        for value, label in CONFIRM_CHOICES:
            self.confirm.addItem(label, value)
        self.confirm.setCurrentIndex(max(0, self.confirm.findData(settings.tools.confirm)))
        confirm_row.addWidget(self.confirm, 1)
        layout.addLayout(confirm_row)

        servers = QGroupBox("Tool servers (Model Context Protocol)")
        columns = QHBoxLayout(servers)
        left = QVBoxLayout()
        self.server_list = QListWidget()
        self.server_list.setMinimumWidth(190)
        left.addWidget(self.server_list, 1)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        left.addLayout(buttons)
        columns.addLayout(left)
        self.editor = QWidget()
        form = QFormLayout(self.editor)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.server_enabled = QCheckBox("Enabled")
        form.addRow(self.server_enabled)
        self.command = QLineEdit()
        self.command.setPlaceholderText("e.g. npx -y @modelcontextprotocol/server-memory")
        form.addRow("Command", self.command)
        self.url = QLineEdit()
        self.url.setPlaceholderText("or a streamable-HTTP URL, e.g. http://127.0.0.1:8000/mcp")
        form.addRow("URL", self.url)
        self.env = QPlainTextEdit()
        self.env.setPlaceholderText("KEY=VALUE per line; ${NAME} reads Parley's environment")
        self.env.setFixedHeight(64)
        form.addRow("Environment", self.env)
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1.0, 600.0)
        self.timeout.setSuffix(" s")
        form.addRow("Time limit", self.timeout)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("fieldNote")
        form.addRow("Status", self.status)
        self.tool_list = QLabel("")
        self.tool_list.setWordWrap(True)
        self.tool_list.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Tools", self.tool_list)
        columns.addWidget(self.editor, 1)
        layout.addWidget(servers, 1)
        layout.addWidget(
            _note(
                "Servers start when you apply. A server that fails or stops only loses its "
                "tools; the conversation goes on. Tools a server marks read-only run at once; "
                "others ask first, as chosen above."
            )
        )

        structured = QGroupBox("Structured output")
        s_form = QFormLayout(structured)
        self.structured_enabled = QCheckBox(
            "Extract a JSON object from every turn, beside the spoken reply"
        )
        self.structured_enabled.setChecked(settings.structured.enabled)
        s_form.addRow(self.structured_enabled)
        schema_row = QHBoxLayout()
        self.schema_path = QLineEdit(settings.structured.schema_path)
        self.schema_path.setPlaceholderText("built-in: intent, urgency, escalate, summary")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_schema)
        schema_row.addWidget(self.schema_path, 1)
        schema_row.addWidget(browse)
        s_form.addRow("JSON Schema", schema_row)
        layout.addWidget(structured)

        self.add_button.clicked.connect(self.add_server)
        self.remove_button.clicked.connect(self.remove_server)
        self.server_list.currentItemChanged.connect(self._select)
        self._fill_list()

    # ------------------------------------------------------------------------------ servers

    def server_names(self) -> list[str]:
        return list(self._servers)

    def add_server(self, name: str = "") -> str:
        """A new, empty server entry (named ``server``, ``server-2``, … unless given)."""
        self._store_current()
        base = name or "server"
        name, n = base, 1
        while name in self._servers:
            n += 1
            name = f"{base}-{n}"
        self._servers[name] = McpServerSettings()
        self._fill_list(select=name)
        return name

    def remove_server(self) -> None:
        if self._current is not None:
            self._servers.pop(self._current, None)
            self._current = None
            self._fill_list()

    def set_statuses(self, statuses: list[ServerStatus] | tuple[ServerStatus, ...]) -> None:
        self._statuses = {s.name: s for s in statuses}
        for i in range(self.server_list.count()):
            item = self.server_list.item(i)
            name = str(item.data(Qt.ItemDataRole.UserRole))
            item.setText(self._label(name))
        self._show_status()

    def _label(self, name: str) -> str:
        status = self._statuses.get(name)
        state = STATE_TEXT[status.state] if status else "not started"
        if not self._servers[name].enabled:
            state = "disabled"
        return f"{name}  ({state})"

    def _fill_list(self, select: str | None = None) -> None:
        self.server_list.blockSignals(True)
        self.server_list.clear()
        for name in self._servers:
            item = QListWidgetItem(self._label(name))
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.server_list.addItem(item)
        self.server_list.blockSignals(False)
        names = list(self._servers)
        chosen = select if select in self._servers else (names[0] if names else None)
        self._current = None
        if chosen is not None:
            self.server_list.setCurrentRow(names.index(chosen))
        else:
            self._load(None)

    def _select(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        self._store_current()
        self._load(str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None)

    def _load(self, name: str | None) -> None:
        self._current = name
        self.editor.setEnabled(name is not None)
        self.remove_button.setEnabled(name is not None)
        server = self._servers.get(name) if name is not None else None
        server = server or McpServerSettings()
        self.server_enabled.setChecked(server.enabled)
        self.command.setText(shlex.join([server.command, *server.args]) if server.command else "")
        self.url.setText(server.url)
        self.env.setPlainText("\n".join(f"{k}={v}" for k, v in server.env.items()))
        self.timeout.setValue(server.timeout)
        self._show_status()

    def _show_status(self) -> None:
        status = self._statuses.get(self._current) if self._current else None
        if status is None:
            self.status.setText("Starts when you apply." if self._current else "")
            self.tool_list.setText("")
            return
        detail = f" — {status.detail}" if status.detail else ""
        self.status.setText(f"{STATE_TEXT[status.state]}{detail}")
        prefix = f"{self._current}__"
        names = [t.removeprefix(prefix) for t in status.tools]
        self.tool_list.setText(", ".join(names) if names else "—")

    def _store_current(self) -> None:
        name = self._current
        if name is None or name not in self._servers:
            return
        try:
            words = shlex.split(self.command.text())
        except ValueError:
            words = self.command.text().split()
        self._servers[name] = McpServerSettings(
            command=words[0] if words else "",
            args=words[1:],
            env=parse_env(self.env.toPlainText()),
            url=self.url.text().strip(),
            enabled=self.server_enabled.isChecked(),
            timeout=float(self.timeout.value()),
        )

    # ----------------------------------------------------------------------------- the rest

    def _choose_schema(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "JSON Schema for structured output", "", "JSON (*.json)"
        )
        if path:
            self.schema_path.setText(path)

    def apply_to(self, settings: Settings) -> None:
        """Write the tab's choices into ``settings``."""
        self._store_current()
        settings.tools.enabled = self.enabled.isChecked()
        confirm = str(self.confirm.currentData())
        if confirm in ("changes", "destructive", "never"):
            settings.tools.confirm = confirm  # type: ignore[assignment]
        settings.tools.mcp_servers = {
            name: server
            for name, server in copy.deepcopy(self._servers).items()
            if server.command or server.url
        }
        settings.structured.enabled = self.structured_enabled.isChecked()
        settings.structured.schema_path = self.schema_path.text().strip()
