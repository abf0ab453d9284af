"""The fault matrix's and the soak's figures at the end of a run that ran them."""

from __future__ import annotations

import pytest

from assistant.bench.soak import table
from tests.faults.matrix import CI_SOAKS, CI_VERDICTS, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CI_VERDICTS:
        terminalreporter.write_sep("-", "fault matrix")
        for line in summary(CI_VERDICTS).splitlines():
            terminalreporter.write_line(line)
    for report in CI_SOAKS:
        terminalreporter.write_sep("-", "soak")
        for line in table(report).splitlines():
            terminalreporter.write_line(line)
