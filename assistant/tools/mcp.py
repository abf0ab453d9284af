"""Tools from Model Context Protocol servers, with the official ``mcp`` SDK.

Each configured server (``McpServerSettings``: a command started over stdio, or a
streamable-HTTP URL) is one ``McpServer``: a task that owns the SDK client for the whole life
of the connection (the SDK's task groups must be entered and left in one task), lists the
server's tools, registers them in the ``ToolRegistry`` under ``<server>__<tool>`` with the
server as their source, and then runs calls one at a time from a queue.

MCP's annotations decide whether the user is asked first: ``readOnlyHint`` → read-only;
otherwise ``destructiveHint: false`` → additive; otherwise (MCP's default) destructive.

Failure never stops the conversation. A server that cannot start, does not answer within its
``timeout``, or breaks off mid-call gets a notice saying so; its tools leave the registry at
once, so the model stops being offered them, and a call in flight ends with an ``error:``
result the model can talk about. ``McpTools.apply`` starts, stops and restarts servers when the
settings change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from assistant.config import McpServerSettings, cache_dir
from assistant.tasks import cancel_and_wait
from assistant.tools.registry import Safety, ToolRegistry

log = logging.getLogger(__name__)

Listener = Callable[[str], None]
#: Names as OpenAI-style function names allow them.
_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ServerState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What the Tools tab shows for one server."""

    name: str
    state: ServerState
    #: The registered names of its tools (empty unless ready).
    tools: tuple[str, ...] = ()
    #: Why it failed, or where it runs.
    detail: str = ""


def _future() -> asyncio.Future[str]:
    return asyncio.get_running_loop().create_future()


@dataclass(slots=True)
class _Call:
    tool: str
    arguments: dict[str, Any]
    result: asyncio.Future[str] = field(default_factory=_future)


class McpConfigError(ValueError):
    """An MCP configuration file cannot be used; the message says why, in one line."""


def load_servers(path: Path) -> dict[str, McpServerSettings]:
    """The servers of an MCP configuration file: ``[servers.NAME]`` tables with the keys of
    ``McpServerSettings`` (``command``, ``args``, ``env``, or ``url``; ``enabled``, ``timeout``)."""
    from assistant.config import SettingsError, settings_from_dict

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise McpConfigError(f"{path} is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"servers"})
    if unknown or not isinstance(data.get("servers", {}), dict):
        raise McpConfigError(f"{path}: expected only [servers.NAME] tables")
    try:
        servers = settings_from_dict({"tools": {"mcp_servers": data.get("servers", {})}})
    except SettingsError as exc:
        raise McpConfigError(f"{path}: {exc}".replace("tools.mcp_servers", "servers")) from None
    for name, server in servers.tools.mcp_servers.items():
        if bool(server.command) == bool(server.url):
            raise McpConfigError(f"{path}: server {name!r} needs either a command or a url")
    return servers.tools.mcp_servers


def tool_name(server: str, tool: str) -> str:
    """The registry name of ``tool`` on ``server``: ``server__tool``, at most 64 characters."""
    return f"{_NAME.sub('_', server)}__{_NAME.sub('_', tool)}"[:64]


def safety_of(annotations: Any) -> Safety:
    """MCP's hints → a safety class (an unannotated tool counts as destructive, as MCP says)."""
    if annotations is None:
        return Safety.DESTRUCTIVE
    if getattr(annotations, "read_only_hint", None):
        return Safety.READ_ONLY
    if getattr(annotations, "destructive_hint", None) is False:
        return Safety.ADDITIVE
    return Safety.DESTRUCTIVE


def expand_env(env: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``${NAME}`` in a value → that variable from Parley's environment ("" if unset)."""
    return {k: _ENV_REF.sub(lambda m: environ.get(m.group(1), ""), v) for k, v in env.items()}


def result_text(result: Any) -> str:
    """A ``CallToolResult`` as text for the model (``error: …`` when the tool failed)."""
    texts = [getattr(block, "text", "") for block in result.content or ()]
    text = "\n".join(t for t in texts if t)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    if result.is_error:
        return f"error: {text or 'the tool failed'}"
    return text or "(no output)"


class McpServer:
    """One server's connection (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: McpServerSettings,
        registry: ToolRegistry,
        *,
        on_notice: Listener,
        on_status: Callable[[ServerStatus], None],
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._registry = registry
        self._on_notice = on_notice
        self._on_status = on_status
        self._log_dir = log_dir
        self._calls: asyncio.Queue[_Call | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.status = ServerStatus(name, ServerState.STOPPED)

    @property
    def source(self) -> str:
        return f"mcp:{self.name}"

    def _set(self, state: ServerState, detail: str = "", tools: tuple[str, ...] = ()) -> None:
        self.status = ServerStatus(self.name, state, tools, detail)
        self._on_status(self.status)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> bool:
        """Connect and register the tools; True once ready, False if it failed (noticed)."""
        if self._task is None:
            self._set(ServerState.STARTING, self._where())
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.name}")
        task = self._task
        ready = asyncio.create_task(self._ready.wait())
        waiting: list[asyncio.Future[Any]] = [ready, task]
        await asyncio.wait(
            waiting, timeout=self.settings.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if not self._ready.is_set() and not task.done():
            await cancel_and_wait(task)  # it hangs while starting
            self._fail(TimeoutError(), None)
        return self.status.state is ServerState.READY

    async def close(self) -> None:
        task, self._task = self._task, None
        self._registry.remove_source(self.source)
        if task is not None and not task.done():
            await self._calls.put(None)
            try:
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except TimeoutError:
                await cancel_and_wait(task)
        if self.status.state not in (ServerState.FAILED, ServerState.DISABLED):
            self._set(ServerState.STOPPED)

    def _where(self) -> str:
        s = self.settings
        return s.url or " ".join([s.command, *s.args])

    # --------------------------------------------------------------------------------- calls

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Run ``tool`` on the server; a failure comes back as ``error: …``."""
        task = self._task
        if task is None or task.done():
            return f"error: the {self.name} tool server is not running"
        request = _Call(tool, arguments)
        await self._calls.put(request)
        waiting: list[asyncio.Future[Any]] = [request.result, task]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if request.result.done():
            return request.result.result()
        return f"error: the {self.name} tool server stopped"

    # ------------------------------------------------------------------------------ the task

    def _transport(self, errlog: TextIO) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        s = self.settings
        if s.url:
            return streamable_http_client(s.url)
        params = StdioServerParameters(command=s.command, args=list(s.args), env=expand_env(s.env))
        return stdio_client(params, errlog=errlog)

    async def _run(self) -> None:
        import anyio
        from mcp import Client

        timeout = self.settings.timeout
        pending: _Call | None = None
        with self._errlog() as errlog:
            try:
                # Starting is timed by ``start``; each call by the client's read timeout.
                async with Client(self._transport(errlog), read_timeout_seconds=timeout) as client:
                    listing = await client.list_tools()
                    names = self._register(listing.tools)
                    self._set(ServerState.READY, self._where(), names)
                    self._ready.set()
                    while (pending := await self._calls.get()) is not None:
                        with anyio.fail_after(timeout):
                            result = await client.call_tool(pending.tool, pending.arguments)
                        if not pending.result.done():
                            pending.result.set_result(result_text(result))
                        pending = None
                    self._registry.remove_source(self.source)
            except Exception as exc:
                self._fail(exc, pending)
            finally:
                self._registry.remove_source(self.source)
                self._ready.set()
                while not self._calls.empty():
                    leftover = self._calls.get_nowait()
                    if leftover is not None and not leftover.result.done():
                        leftover.result.set_result(f"error: the {self.name} tool server stopped")

    def _fail(self, exc: BaseException, pending: _Call | None) -> None:
        reason = _describe(exc, self.settings.timeout)
        started = self.status.state is ServerState.READY
        if started:
            message = f"The {self.name} tool server {reason}; its tools are unavailable for now."
        else:
            message = f"The {self.name} tool server could not start: {reason}."
        log.warning("%s", message)
        if pending is not None and not pending.result.done():
            pending.result.set_result(f"error: the {self.name} tool server {reason}")
        self._set(ServerState.FAILED, reason)
        self._on_notice(message)

    def _register(self, tools: list[Any]) -> tuple[str, ...]:
        names = []
        for tool in tools:
            name = tool_name(self.name, tool.name)
            annotations = tool.annotations
            title = tool.title or getattr(annotations, "title", None) or tool.name

            self._registry.register(
                name,
                tool.description or title,
                dict(tool.input_schema or {"type": "object", "properties": {}}),
                self._caller(tool.name),
                timeout=self.settings.timeout + 5.0,
                safety=safety_of(annotations),
                title=f"{self.name}: {title.replace('_', ' ')}",
                source=self.source,
            )
            names.append(name)
        return tuple(names)

    def _caller(self, tool: str) -> Callable[..., Any]:
        async def run(**arguments: Any) -> str:
            return await self.call(tool, arguments)

        return run

    @contextlib.contextmanager
    def _errlog(self) -> Any:
        """Where a stdio server's stderr goes: a log file, so it never clutters the terminal."""
        directory = self._log_dir or cache_dir() / "logs"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            f = open(directory / f"mcp-{_NAME.sub('_', self.name)}.log", "a", encoding="utf-8")
        except OSError:
            f = open(os.devnull, "w", encoding="utf-8")
        try:
            yield f
        finally:
            f.close()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"did not answer within {timeout:g} s"
    if isinstance(exc, FileNotFoundError):
        return f"its command was not found ({exc.filename or exc})"
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _describe(inner, timeout)
    text = str(exc) or type(exc).__name__
    if "closed" in text.lower() or isinstance(exc, (EOFError, BrokenPipeError)):
        return "stopped unexpectedly"
    return f"failed ({text})"


class McpTools:
    """Every configured MCP server, kept in step with the settings."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        on_notice: Listener | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.registry = registry
        self.on_notice: list[Listener] = [on_notice] if on_notice else []
        self.on_status: list[Callable[[ServerStatus], None]] = []
        self._log_dir = log_dir
        self._servers: dict[str, McpServer] = {}
        self._disabled: dict[str, McpServerSettings] = {}

    def statuses(self) -> list[ServerStatus]:
        out = [s.status for s in self._servers.values()]
        out += [ServerStatus(n, ServerState.DISABLED) for n in self._disabled]
        return sorted(out, key=lambda s: s.name)

    def _notice(self, message: str) -> None:
        for listener in list(self.on_notice):
            listener(message)

    def _status(self, status: ServerStatus) -> None:
        for listener in list(self.on_status):
            listener(status)

    async def apply(self, servers: Mapping[str, McpServerSettings]) -> None:
        """Start what is new or changed, stop what is gone or disabled; wait for the starts."""
        wanted = {n: s for n, s in servers.items() if s.enabled}
        self._disabled = {n: s for n, s in servers.items() if not s.enabled}
        for name in list(self._servers):
            server = self._servers[name]
            if name not in wanted or wanted[name] != server.settings:
                del self._servers[name]
                await server.close()
        starting = []
        for name, settings in wanted.items():
            if name in self._servers and self._servers[name].status.state is ServerState.READY:
                continue
            if name in self._servers:  # failed before: try again with the same settings
                await self._servers.pop(name).close()
            server = McpServer(
                name,
                settings,
                self.registry,
                on_notice=self._notice,
                on_status=self._status,
                log_dir=self._log_dir,
            )
            self._servers[name] = server
            starting.append(server.start())
        await asyncio.gather(*starting)
        for name in self._disabled:
            self._status(ServerStatus(name, ServerState.DISABLED))

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(s.close() for s in servers))
