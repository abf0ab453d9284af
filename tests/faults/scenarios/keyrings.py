"""The OS keyring fails: locked, broken, slow, silent, or absent. The key of the cloud language
model (the OpenAI fake) is only in the keyring; the offline model is configured as the fallback.
Wall-clock time: the keyring is read on threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyring.backends import fail

from assistant import secrets
from assistant.bench.loopmon import LoopMonitor
from assistant.events import Source
from tests.fakes.keyrings import BrokenKeyring, LockedKeyring, SlowKeyring, installed
from tests.faults.matrix import Context, Observed, Scenario
from tests.faults.scenarios.common import fault_then_recover, observed_without_stalls
from tests.faults.scenarios.network import serve


def with_keyring(make: Callable[[dict[tuple[str, str], str]], Any], timeout: float = 10.0) -> Any:
    """A run: the keyring ``make(store)`` holds the key from the start; two typed turns."""

    async def run(ctx: Context) -> Observed | None:
        for var in secrets.ENV_VARS.values():
            ctx.env(var, None)
        ctx.patch(secrets, "KEYRING_TIMEOUT", timeout)
        served = await ctx.stack.enter_async_context(serve("llm", ctx.canary))
        backend = make({(secrets.SERVICE, "openai"): ctx.canary})
        ctx.stack.enter_context(installed(backend))
        monitor = LoopMonitor(interval=0.01)
        monitor.start()
        rig = await fault_then_recover(
            ctx, engines=served.engines, virtual=False, fault_turn="type", recover_turn="type"
        )
        return await observed_without_stalls(rig, monitor, "the keyring")

    return run


FELL_BACK = r"notice \[llm\] openai failed \(OpenAI: {}.*\); using local instead"


def _scenario(name: str, what: str, message: str | None, make: Any, **options: Any) -> Scenario:
    return Scenario(
        name, "keyring", what, message, Source.LLM, 2.0, 8.0, 2, with_keyring(make, **options),
        virtual=False,
    )  # fmt: skip


SCENARIOS = (
    _scenario(
        "keyring locked",
        "the keyring holding the key is locked",
        FELL_BACK.format(r"the system keyring is locked, so its API key cannot be read\. Unlock"),
        LockedKeyring,
    ),
    _scenario(
        "keyring broken",
        "every keyring read fails (a broken D-Bus session)",
        FELL_BACK.format(r"the system keyring failed \(KeyringError\), so its API key cannot"),
        BrokenKeyring,
    ),
    _scenario(
        "keyring slow",
        "every keyring read takes 1 s",
        None,
        lambda store: SlowKeyring(store, delay=1.0),
    ),
    _scenario(
        "keyring silent",
        "the keyring never answers (an unlock prompt nobody sees)",
        FELL_BACK.format(r"the system keyring did not answer within 0\.5 s"),
        lambda store: SlowKeyring(store, delay=None),
        timeout=0.5,
    ),
    _scenario(
        "no keyring, no key",
        "no keyring on this machine and no key in the environment",
        FELL_BACK.format(r"no API key\. Set it in Settings → API keys → OpenAI"),
        lambda store: fail.Keyring(),
    ),
)
