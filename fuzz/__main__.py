"""Run one fuzz target by hand: `python -m fuzz mdp|envelope|core [libFuzzer options]`.

With atheris installed (`pip install atheris`) this is coverage-guided libFuzzer, e.g.

    python -m fuzz core -max_total_time=300 fuzz/corpus/core

Without it, a plain random-mutation loop runs for `-max_total_time` seconds (default 10),
so the targets stay runnable anywhere. A failing input is written to `crash-<target>-*.bin`
and the exception is raised.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fuzz.targets import TARGETS, TOKENS


def _seconds(args: list[str], default: float = 10.0) -> float:
    for arg in args:
        if arg.startswith("-max_total_time="):
            return float(arg.split("=", 1)[1])
    return default


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        how = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if how == 0:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif how == 1 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif how == 2 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data[pos:pos] = bytes([0x80 | rng.randrange(len(TOKENS))])
    return bytes(data)


def random_loop(name: str, target: Callable[[bytes], None], seconds: float) -> int:
    """The fallback without atheris: mutate and run until the time is up."""
    rng = random.Random()
    seeds: list[bytes] = [b"", bytes(range(40)), bytes([0x83, 0x82, 0x83, 0x8b])]
    end, runs = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        data = _mutate(rng, seeds)
        try:
            target(data)
        except BaseException:
            out = Path(f"crash-{name}-{data.hex()[:16]}.bin")
            out.write_bytes(data)
            print(f"{name}: failing input written to {out}", file=sys.stderr)
            raise
        runs += 1
        if len(seeds) < 256 and rng.random() < 0.05:
            seeds.append(data)
    print(f"{name}: {runs} inputs in {seconds:g}s, no failure (random loop; install atheris "
          "for coverage-guided fuzzing)", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: python -m fuzz {{{'|'.join(TARGETS)}}} [libFuzzer options]", file=sys.stderr)
        return 2
    name, target = argv[1], TARGETS[argv[1]]
    logging.disable(logging.CRITICAL)  # the broker logs every refused peer; noise here
    try:
        import atheris
    except ImportError:
        return random_loop(name, target, _seconds(argv[2:]))
    atheris.instrument_all()
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
