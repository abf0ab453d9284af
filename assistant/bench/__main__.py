import argparse
import sys

from assistant.bench import run_bench

parser = argparse.ArgumentParser(prog="python -m assistant.bench")
parser.add_argument(
    "which", choices=("overhead", "latency", "echo", "engines", "tools", "turns", "faults", "soak")
)
parser.add_argument("--turns", type=int, default=200)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--local", action="store_true")
args = parser.parse_args()
sys.exit(run_bench(args.which, turns=args.turns, quick=args.quick, local=args.local))
