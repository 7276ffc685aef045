"""A transaction that never ends (`*   << Request  >>` and then header after header, no `End`):
what it keeps is capped, so `something | vlogdump` stays in flat memory, and the drop is said."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from webops.vlogdump.parse import MAX_HEADERS

DATA = Path(__file__).parent / "data"

# peak RSS from VmHWM: it starts over at exec (getrusage's maxrss keeps pytest's, from fork)
WRAPPER = (
    "import os\n"
    "from webops.cli import main\n"
    "try:\n"
    "    main(['vlogdump', '--no-color'])\n"
    "finally:\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
    "    os.write(2, b'maxrss %s\\n' % hwm.encode())\n"
)


def piped(chunks, tmp: Path) -> tuple[int, str, str]:
    """vlogdump reading `chunks` from a pipe: its peak RSS (KiB), stdout and stderr."""
    with open(tmp / "out", "w+b") as out, open(tmp / "err", "w+b") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER], stdin=subprocess.PIPE, stdout=out, stderr=err
        )
        assert proc.stdin is not None
        with proc.stdin:
            for chunk in chunks:
                proc.stdin.write(chunk)
        assert proc.wait(300) == 0, (tmp / "err").read_bytes()[-2000:]
    text = (tmp / "err").read_text()
    return int(text.rsplit("maxrss ", 1)[1].split()[0]), (tmp / "out").read_text(), text


def endless(lines: int, then: bytes = b""):
    """One request's header, `lines` distinct ReqHeader records, no End; then `then`."""
    yield b"*   << Request  >> 32770\n-   Begin          req 32769 rxreq\n"
    step = 100_000
    for start in range(0, lines, step):
        yield b"".join(
            b"-   ReqHeader      X-Junk-%d: value number %d of a request that never ends\n" % (i, i)
            for i in range(start, min(lines, start + step))
        )
    yield then


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_a_transaction_that_never_ends_stays_in_flat_memory(tmp_path) -> None:
    log = (DATA / "varnish71-vxid.txt").read_bytes()
    lines = 1_500_000
    base, expected, _ = piped([log], tmp_path)
    used, out, err = piped(endless(lines, then=log), tmp_path)
    assert used - base < 32_000, f"{used - base} KiB more for one transaction that never ends"  # KiB
    assert out == expected  # the real requests after it, as without it
    assert f"{lines - MAX_HEADERS} header records over a transaction's cap dropped" in err, err[-2000:]
    assert "1 incomplete dropped" in err
