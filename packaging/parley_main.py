"""The installed app's entry point: the same ``parley`` command as the pip-installed one."""

import multiprocessing
import sys

from assistant.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
