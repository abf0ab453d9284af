"""The fault matrix's figures at the end of a run that ran its scenarios."""

from __future__ import annotations

import pytest

from tests.faults.matrix import CI_VERDICTS, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CI_VERDICTS:
        terminalreporter.write_sep("-", "fault matrix")
        for line in summary(CI_VERDICTS).splitlines():
            terminalreporter.write_line(line)
