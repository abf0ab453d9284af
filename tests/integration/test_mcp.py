"""MCP servers as tool sources: a real server written for the tests (tests/fakes/mcp_server.py),
started by Parley from its settings over stdio and over streamable HTTP on 127.0.0.1, its
tools called in spoken turns, and every way it can fail: not starting, hanging, being killed
mid-call. The conversation always goes on."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import McpServerSettings
from assistant.engines.fake import FakeLLM, FakeSTT
from assistant.events import ConfirmationRequested, Notice
from assistant.tools import Safety, ToolRegistry
from assistant.tools.mcp import McpTools, ServerState

SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"


def stdio(pid_file: Path | None = None, timeout: float = 20.0) -> McpServerSettings:
    env = {"MCP_TEST_PID_FILE": str(pid_file)} if pid_file else {}
    return McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio"], env=env, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the test MCP server did not start") from None
                import time

                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


async def start(
    tmp_path: Path, servers: dict[str, McpServerSettings]
) -> tuple[McpTools, list[str]]:
    notices: list[str] = []
    tools = McpTools(ToolRegistry(), on_notice=notices.append, log_dir=tmp_path / "logs")
    await tools.apply(servers)
    return tools, notices


async def test_a_stdio_server_from_settings_is_listed_and_called_by_voice(
    tmp_path, harness_factory
) -> None:
    mcp, notices = await start(tmp_path, {"shop": stdio()})
    try:
        (status,) = mcp.statuses()
        assert status.state is ServerState.READY and notices == []
        assert status.tools == tuple(
            f"shop__{t}"
            for t in ("get_order_status", "slow_lookup", "create_ticket", "delete_ticket")
        )
        registry = mcp.registry
        safety = {t.spec.name: t.safety for t in registry.tools()}
        assert safety["shop__get_order_status"] is Safety.READ_ONLY
        assert safety["shop__create_ticket"] is Safety.ADDITIVE
        assert safety["shop__delete_ticket"] is Safety.DESTRUCTIVE
        llm = FakeLLM(
            ttft=0.05,
            tokens_per_second=200,
            tool_call=("shop__get_order_status", '{"order_id": "a7"}'),
        )
        stt = FakeSTT(script=("Where is my order A7?",))
        async with harness_factory(llm=llm, stt=stt, tools=registry) as h:
            await h.ptt(0.6)
            await h.until(lambda: bool(h.finished()), timeout=20)
        (turn,) = h.finished()
        assert turn.tool_calls[0].result == "Order A7 left the warehouse and arrives tomorrow."
        assert turn.assistant_text.startswith("The answer is Order A7 left the warehouse")
        assert {t.name for t in llm.requests[0].tools} >= {"shop__get_order_status"}
    finally:
        await mcp.close()
    assert mcp.registry.tools() == []


async def test_destructive_hints_ask_first(tmp_path, harness_factory) -> None:
    mcp, _ = await start(tmp_path, {"shop": stdio()})
    try:
        llm = FakeLLM(ttft=0.05, tool_call=("shop__delete_ticket", '{"number": 3}'))
        async with harness_factory(llm=llm, tools=mcp.registry) as h:
            await h.ptt(0.6)
            await h.until(lambda: bool(h.finished()), timeout=20)
        (asked,) = h.of(ConfirmationRequested)
        assert asked.title == "shop: delete ticket"
        assert h.finished()[0].tool_calls == []
    finally:
        await mcp.close()


async def test_a_server_killed_mid_call_gives_a_notice_and_the_next_turn_is_fine(
    tmp_path, harness_factory
) -> None:
    pid_file = tmp_path / "server.pid"
    mcp, notices = await start(tmp_path, {"shop": stdio(pid_file)})
    try:
        llm = FakeLLM(
            ttft=0.05, tokens_per_second=200, tool_call=("shop__slow_lookup", '{"seconds": 8}')
        )
        stt = FakeSTT(script=("Look it up.", "Thanks, what else?"))
        async with harness_factory(llm=llm, stt=stt, tools=mcp.registry) as h:
            mcp.on_notice.append(h.session.notice)
            await h.ptt(0.6)
            await h.until(lambda: len(llm.requests) == 1, timeout=20)
            await asyncio.sleep(0.5)  # the call is running
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            await h.until(lambda: bool(h.finished()), timeout=20)
            first = h.finished()[0]
            assert first.tool_calls[0].result.startswith("error: the shop tool server stopped")
            assert [n.message for n in h.of(Notice)] == [
                "The shop tool server stopped unexpectedly; its tools are unavailable for now."
            ]
            assert mcp.registry.tools() == [] and mcp.statuses()[0].state is ServerState.FAILED
            llm.tool_call = None
            await h.ptt(0.6)
            await h.until(lambda: len(h.finished()) == 2, timeout=20)
        second = h.finished()[1]
        assert second.assistant_text.startswith("You asked: Thanks, what else.")
        assert not second.error and llm.requests[-1].tools == []
        assert notices == [n.message for n in h.of(Notice)]
    finally:
        await mcp.close()


async def test_a_streamable_http_server_on_localhost(
    tmp_path, http_server, harness_factory
) -> None:
    mcp, notices = await start(tmp_path, {"web": McpServerSettings(url=http_server, timeout=10)})
    try:
        assert mcp.statuses()[0].state is ServerState.READY, notices
        llm = FakeLLM(ttft=0.05, tool_call=("web__get_order_status", '{"order_id": "b1"}'))
        async with harness_factory(llm=llm, tools=mcp.registry) as h:
            await h.ptt(0.6)
            await h.until(lambda: bool(h.finished()), timeout=20)
        assert h.finished()[0].tool_calls[0].result.startswith("Order B1 left the warehouse")
    finally:
        await mcp.close()


async def test_servers_that_fail_to_start_or_hang_only_leave_a_notice(tmp_path) -> None:
    servers = {
        "missing": McpServerSettings(command=str(tmp_path / "no-such-server")),
        "mute": McpServerSettings(
            command=sys.executable, args=["-c", "import time; time.sleep(60)"], timeout=1.5
        ),
        "off": McpServerSettings(command="whatever", enabled=False),
        "shop": stdio(timeout=8.0),  # room to start on a busy machine
    }
    mcp, notices = await start(tmp_path, servers)
    try:
        states = {s.name: s.state for s in mcp.statuses()}
        assert states == {
            "missing": ServerState.FAILED,
            "mute": ServerState.FAILED,
            "off": ServerState.DISABLED,
            "shop": ServerState.READY,
        }
        missing = tmp_path / "no-such-server"
        assert sorted(notices) == [
            f"The missing tool server could not start: its command was not found ({missing}).",
            "The mute tool server could not start: did not answer within 1.5 s.",
        ]
        # A call that hangs past the timeout: the server is given up, its tools leave.
        from assistant.engines.base import ToolCall

        result = await mcp.registry.run(ToolCall("1", "shop__slow_lookup", '{"seconds": 30}'))
        assert result == "error: the shop tool server did not answer within 8 s"
        assert (
            notices[-1]
            == "The shop tool server did not answer within 8 s; its tools are unavailable for now."
        )
        assert mcp.registry.tools() == []
        # Applying the settings again restarts what failed.
        await mcp.apply({"shop": stdio()})
        assert [s.state for s in mcp.statuses()] == [ServerState.READY]
    finally:
        await mcp.close()
