import argparse
import sys

from assistant.bench import run_bench

parser = argparse.ArgumentParser(prog="python -m assistant.bench")
parser.add_argument("which", choices=("overhead", "latency", "echo"))
parser.add_argument("--turns", type=int, default=200)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--compare", action="store_true")
parser.add_argument("--ablate", action="append", metavar="LEVER")
parser.add_argument("--curve", metavar="DIAL=V1,V2")
parser.add_argument("--repeat", type=int, default=1)
args = parser.parse_args()
sys.exit(
    run_bench(
        args.which,
        turns=args.turns,
        quick=args.quick,
        compare=args.compare,
        ablate=args.ablate,
        curve=args.curve,
        repeat=args.repeat,
    )
)
