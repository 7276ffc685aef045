"""The parser on recorded Varnish 7.1 logs, and on broken, partial and endless input."""

from __future__ import annotations

from pathlib import Path

from webops.vlogdump.parse import LogParser

DATA = Path(__file__).parent / "data"


def parse(text: str, max_pending: int = 10_000) -> tuple[list, LogParser]:
    p = LogParser(max_pending)
    out = [t for line in text.splitlines(keepends=True) for t in p.feed(line)]
    return out + list(p.finish()), p


def test_both_groupings_give_the_same_transactions() -> None:
    vxid, _ = parse((DATA / "varnish71-vxid.txt").read_text())
    grouped, _ = parse((DATA / "varnish71-request.txt").read_text())

    def key(t):
        return (t.vxid, t.url, t.handling, t.status, t.time_ms, t.backend.vxid if t.backend else None)

    assert [key(t) for t in vxid] == [key(t) for t in grouped]
    assert [(t.url, t.handling, t.status) for t in vxid] == [
        ("/", "MISS", "200"),
        ("/", "HIT", "200"),
        ("/pass", "PASS", "404"),
        ("/nothere", "MISS", "404"),
        ("/synth", "SYNTH", "403"),
    ]
    first = vxid[0]
    assert first.client == "127.0.0.1" and first.time_ms == 1.516
    assert first.backend is not None and first.backend.status == "200"
    assert ("Via", "1.1 varnish (Varnish/7.1)") in first.resp_headers


def test_garbled_lines_are_skipped_and_counted() -> None:
    text = (DATA / "varnish71-vxid.txt").read_text()
    lines = text.splitlines(keepends=True)
    noisy = [*lines[:50], "\x00\xffgarbage\n", "-   \n", "??\n", *lines[50:]]
    out, p = parse("".join(noisy))
    assert len(out) == 5
    assert p.counts.bad_lines >= 2


def test_partial_input_drops_the_incomplete_transaction() -> None:
    text = (DATA / "varnish71-vxid.txt").read_text()
    cut = (
        text[: text.index("*   << Request  >> 8")] + "*   << Request  >> 8\n-   Begin          req 7 rxreq\n"
    )
    out, p = parse(cut)
    assert [t.vxid for t in out] == [2, 32770, 5, 32772]
    assert p.counts.incomplete == 1


def test_memory_is_capped_on_an_endless_pipe() -> None:
    p = LogParser(max_pending=100)
    for vxid in range(10_000):  # transactions that never end
        list(p.feed(f"*   << Request  >> {vxid}\n"))
        list(p.feed("-   ReqURL         /x\n"))
    assert len(p.open) == 100
    assert p.counts.incomplete == 9_900


def test_requests_whose_fetch_never_comes_are_still_shown() -> None:
    text = (DATA / "varnish71-vxid.txt").read_text()
    no_bereqs = []
    skip = False
    for line in text.splitlines(keepends=True):
        if line.startswith("*"):
            skip = "BeReq" in line
        if not skip:
            no_bereqs.append(line)
    out, p = parse("".join(no_bereqs))
    assert len(out) == 5 and p.counts.unjoined == 3


def test_fetches_dropped_by_max_pending_are_counted() -> None:
    p = LogParser(max_pending=2)
    for vxid in range(10, 15):  # backend fetches whose requests never come
        p.feed(f"*   << BeReq    >> {vxid}\n")
        p.feed(f"-   Begin          bereq {vxid - 1} fetch\n")
        p.feed("-   End\n")
    assert p.counts.fetches_dropped == 3  # pushed out of the holding area
    list(p.finish())
    assert p.counts.fetches_dropped == 5  # and the two left at the end


def test_deep_nesting_markers() -> None:
    p = LogParser()
    lines = ["*   << Request  >> 1\n", "-   Begin          req 0 rxreq\n", "-   ReqURL         /a\n"]
    lines += [
        "*4* << Request  >> 4\n",
        "-4- Begin          req 1 esi\n",
        "-4- ReqURL         /deep\n",
        "-4- End\n",
    ]
    out = [t for line in lines for t in p.feed(line)]
    assert [t.url for t in out] == ["/deep"] and p.counts.bad_lines == 0
