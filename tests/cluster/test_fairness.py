"""Fairness in a worker: small requests are not held up by large ones, and a full queue says so.

No timings are asserted: the order in which answers come back, and the status codes."""

from __future__ import annotations

import itertools
import json
import threading

from tests.conftest import wait_until

SMALL = ["The Art of Dog Walking", "Learn The Art of Public Speaking", "The Joy of Dog Walking"]


def large(n: int, words: int = 14, tag: str = "") -> list[str]:
    """n distinct sentences of about `words` + 3 word pieces each."""
    return [f"{tag} sentence {i} " + " ".join(f"w{(i * 7 + j) % 50}" for j in range(words)) for i in range(n)]


def test_small_requests_are_answered_while_a_large_one_is_encoded(serve) -> None:
    s = serve("--workers", "1")
    order = itertools.count()
    finished: dict[str, tuple[int, int]] = {}
    sent = threading.Event()

    def big() -> None:
        conn = s.connection(timeout=600)
        # 24,000 word pieces in 100 long sentences: long to encode, quick to cluster, so the order
        # of the answers is the order in which the model got through them.
        body = json.dumps({"sentences": large(100, 118)}).encode()
        conn.request("POST", "/cluster", body, {"Content-Type": "application/json"})
        sent.set()  # the whole body is on its way
        r = conn.getresponse()
        r.read()
        finished["large"] = (next(order), r.status)

    t = threading.Thread(target=big)
    t.start()
    wait_until(sent.is_set, what="the large request to be sent")
    try:
        for i in range(5):  # one after the other, while the large one is encoded
            status, _, _ = s.cluster(SMALL)
            finished[f"small{i}"] = (next(order), status)
    finally:
        t.join(600)
    assert all(status == 200 for _, status in finished.values()), finished
    assert max(finished[f"small{i}"][0] for i in range(5)) < finished["large"][0], finished


def test_a_full_queue_is_a_503_with_retry_after(serve) -> None:
    # One worker, a queue of 3,000 word pieces: of six requests of ~2,400 arriving together, at
    # most one is encoded at a time and the others are turned away at once instead of waiting.
    s = serve("--workers", "1", "--max-tokens", "3000", "--max-queue", "3000")
    start = threading.Barrier(6)
    results: list[tuple[int, dict, bytes]] = []

    def one(n: int) -> None:
        body = large(70, 14, tag=f"r{n}")
        start.wait()
        results.append(s.cluster(body))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    statuses = sorted(status for status, _, _ in results)
    assert len(statuses) == 6 and set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for status, headers, body in results:
        if status == 503:
            assert headers["retry-after"].isdigit() and int(headers["retry-after"]) >= 1, headers
            assert b"retry after" in body
    assert s.cluster(SMALL)[0] == 200  # and once the queue is empty, requests are taken again
