"""How much the shell action adds to running a command.

For each command, the median wall time of ``ShellAction.run`` (with output decoded,
split and stored through a real ``StepOutput``) is printed next to the median of a bare
``asyncio.create_subprocess_exec`` that only reads the pipes, measured in the same run,
with the ratio (target: at most 1.3x).

    .venv/bin/python bench/shell_step.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haloterm.plugins.shell import ShellAction, ShellInputs
from tests.actions.context import LocalContext

COMMANDS = {
    "true": "true",
    "10k lines": "seq -f 'line %g of the output, padded a little' 10000",
}


async def bare(command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "/bin/bash",
        "-c",
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    await proc.communicate()


async def action(command: str, tmp: Path) -> None:
    ctx = LocalContext(tmp)
    result = await ShellAction().run(ShellInputs(command=command), ctx)
    ctx.finish()
    assert result.passed


async def output_only(data: bytes, tmp: Path) -> None:
    """The same bytes through the step's output path alone, with no process."""
    ctx = LocalContext(tmp)
    sink = ctx.output("stdout")
    for start in range(0, len(data), 65536):
        sink.write(data[start : start + 65536])
    ctx.finish()


async def median(runs: int, once: Callable[[], Awaitable[None]]) -> float:
    await once()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(runs: int, data: bytes) -> None:
    print(f"{'command':<12} {'bare exec':>10} {'shell action':>13} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, command in COMMANDS.items():
            base = await median(runs, functools.partial(bare, command))
            ours = await median(runs, functools.partial(action, command, Path(tmp)))
            print(
                f"{label:<12} {base * 1000:>8.2f}ms {ours * 1000:>11.2f}ms "
                f"{ours / base:>6.2f}x"
            )
        alone = await median(runs, functools.partial(output_only, data, Path(tmp)))
        lines = data.count(b"\n")
        print(
            f"of which decoding, masking and {lines:,} LogLines (no process): "
            f"{alone * 1000:.2f}ms = {lines / alone:,.0f} lines/s (target >= 100,000)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    sample = subprocess.run(
        ["/bin/bash", "-c", COMMANDS["10k lines"]], capture_output=True, check=True
    ).stdout
    asyncio.run(main(parser.parse_args().runs, sample))
