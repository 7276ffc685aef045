"""Feed vlogdump millions of Varnish transactions through a pipe; report lines/s and memory.

The log is the recorded Varnish 7.1 session in tests/vlogdump/data, repeated with fresh vxids
(so every transaction is new to the parser). Memory is sampled while it runs: it must stay flat.

    python bench/vlogdump_bench.py [--transactions 2000000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE = Path(__file__).parent.parent / "tests" / "vlogdump" / "data" / "varnish71-vxid.txt"


def template() -> tuple[list[str], int]:
    """The sample with its vxids turned into {} slots, and how many vxids one copy spans."""
    text = SAMPLE.read_text()
    vxids = sorted(
        {int(v) for v in re.findall(r">> (\d+)", text)}
        | {int(v) for v in re.findall(r"(?:Begin|Link)\s+\w+ (\d+)", text)}
    )
    span = max(vxids) + 1
    return text.splitlines(keepends=True), span


def generate(copies: int):
    """`copies` repetitions of the sample, each with its vxids shifted past the previous one's."""
    lines, span = template()
    # split around every vxid: the text before it (kept with its label) and the number itself
    parts = re.split(r"((?:>> |(?:Begin|Link)\s+b?e?req )\d+)", "".join(lines))
    texts = parts[0::2]
    labels = [re.match(r"(.*?)(\d+)$", p).groups() for p in parts[1::2]]  # type: ignore[union-attr]
    for i in range(copies):
        offset = i * span
        out = [texts[0]]
        for (label, vxid), text in zip(labels, texts[1:], strict=True):
            out += (label, str(int(vxid) + offset), text)
        yield "".join(out)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transactions", type=int, default=2_000_000, help="client requests to feed")
    args = ap.parse_args()
    lines, _ = template()
    per_copy = sum(1 for line in lines if "<< Request" in line)
    copies = args.transactions // per_copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "webops", "vlogdump", "--no-color"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            try:
                samples.append((time.monotonic(), rss_kib(proc.pid)))
            except OSError:
                return

    threading.Thread(target=sample, daemon=True).start()
    start = time.monotonic()
    chunk, sent_lines = [], 0
    assert proc.stdin is not None
    for block in generate(copies):
        chunk.append(block)
        if len(chunk) >= 200:
            text = "".join(chunk)
            sent_lines += text.count("\n")
            proc.stdin.write(text)
            chunk = []
    text = "".join(chunk)
    sent_lines += text.count("\n")
    proc.stdin.write(text)
    peak = rss_kib(proc.pid, "VmHWM")
    proc.stdin.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.wait()
    elapsed = time.monotonic() - start
    done.set()
    print(
        f"vlogdump: {copies * per_copy:,} transactions, {sent_lines:,} lines in {elapsed:.1f} s:"
        f" {sent_lines / elapsed:,.0f} lines/s, {copies * per_copy / elapsed:,.0f} transactions/s"
    )
    if samples:
        tenth = samples[len(samples) // 10][1] / 1024
        print(
            f"  RSS {tenth:.1f} MiB at 10 % of the run, {samples[-1][1] / 1024:.1f} MiB at the end,"
            f" peak {peak / 1024:.1f} MiB"
        )
    print("  " + err.strip())


if __name__ == "__main__":
    main()
