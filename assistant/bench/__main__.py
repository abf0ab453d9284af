"""``python -m assistant.bench WHICH [options]``: the same as ``parley bench WHICH [options]``."""

import sys

from assistant.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
