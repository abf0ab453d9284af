"""The assistant's tools, put together once: the built-ins, timers and reminders and notes kept
beside the conversation history, the MCP servers named in the settings, the confirmation
policy, and the structured extraction.

``ToolBox`` keeps one ``ToolRegistry`` for the app's whole life; its contents follow the
settings (``apply``). A session is offered the registry unless tools are switched off
(``offered``). Alarms keep ringing even with tools off: a timer set earlier still fires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from assistant.clock import SYSTEM_CLOCK, Clock
from assistant.config import McpServerSettings, Settings
from assistant.engines.base import LanguageModel
from assistant.events import AppEvent, ErrorEvent, Notice, Source, ToolServers
from assistant.tools import ConfirmPolicy, ToolRegistry, register_builtins
from assistant.tools.alarms import Alarm, AlarmBook, register_alarm_tools
from assistant.tools.mcp import McpTools, ServerStatus
from assistant.tools.notes import NoteBook, register_note_tools
from assistant.tools.structured import SchemaError, StructuredExtractor, load_schema

log = logging.getLogger(__name__)

TIMERS_FILE = "timers.json"
NOTES_FILE = "notes.jsonl"


def default_registry(alarms: AlarmBook, notes: NoteBook) -> ToolRegistry:
    """The tools the app offers before any MCP server: the built-ins, timers and reminders kept
    in ``alarms``, notes kept in ``notes``."""
    registry = register_builtins(ToolRegistry())
    register_alarm_tools(registry, alarms)
    register_note_tools(registry, notes)
    return registry


class ToolBox:
    """See the module docstring. ``registry``: a fixed set of tools to use as it is (tests);
    otherwise the built-ins, alarms and notes are registered here."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        *,
        emit: Callable[[AppEvent], None],
        on_alarm: Callable[[Alarm], None],
        registry: ToolRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        wall: Callable[[], float] = time.time,
        log_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._emit = emit
        self.directory = directory
        self.alarms = AlarmBook(directory / TIMERS_FILE, clock=clock, wall=wall, on_fire=on_alarm)
        self.notes = NoteBook(directory / NOTES_FILE, wall=wall)
        if registry is None:
            registry = default_registry(self.alarms, self.notes)
        self.registry = registry
        self.mcp = McpTools(registry, on_notice=self._notice, log_dir=log_dir)
        self.mcp.on_status.append(self._status)
        self._schema: dict[str, object] | None = None
        self._schema_problem: str | None = None
        self._configure(settings)

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Ring the alarms that are due and start the MCP servers (each failure is a notice)."""
        if self.alarms.notice:
            self._emit(Notice(self.alarms.notice, Source.TOOLS))
        self.alarms.start()
        await self._apply_servers()

    async def apply(self, settings: Settings) -> None:
        """Follow changed settings: policy, servers, structured schema."""
        self._settings = settings
        self._configure(settings)
        await self._apply_servers()

    async def close(self) -> None:
        self.alarms.close()
        await self.mcp.close()

    # ------------------------------------------------------------------------------ queries

    def offered(self) -> ToolRegistry | None:
        """The registry a session gets (None when tools are switched off)."""
        return self.registry if self._settings.tools.enabled else None

    def extractor(self, llm: LanguageModel) -> StructuredExtractor | None:
        """The structured extraction for a session on ``llm`` (None when it is off)."""
        if not self._settings.structured.enabled or self._schema_problem:
            return None
        return StructuredExtractor(llm, self._schema)

    def server_statuses(self) -> list[ServerStatus]:
        return self.mcp.statuses()

    # ----------------------------------------------------------------------------- internals

    def _configure(self, settings: Settings) -> None:
        self.registry.policy = ConfirmPolicy(settings.tools.confirm)
        path = settings.structured.schema_path
        problem = None
        self._schema = None
        if settings.structured.enabled and path:
            try:
                self._schema = load_schema(Path(path).expanduser())
            except SchemaError as exc:
                problem = f"Structured output is off: {exc}. Choose another schema in Settings."
        if problem and problem != self._schema_problem:
            self._emit(ErrorEvent(problem, Source.SETTINGS))
        self._schema_problem = problem

    def _servers(self) -> dict[str, McpServerSettings]:
        if not self._settings.tools.enabled:
            return {}
        return dict(self._settings.tools.mcp_servers)

    async def _apply_servers(self) -> None:
        await self.mcp.apply(self._servers())
        self._emit(ToolServers(tuple(self.mcp.statuses())))

    def _notice(self, message: str) -> None:
        self._emit(Notice(message, Source.TOOLS))

    def _status(self, _status: ServerStatus) -> None:
        self._emit(ToolServers(tuple(self.mcp.statuses())))
