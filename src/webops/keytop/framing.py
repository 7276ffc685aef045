"""memcached's text framing, shared by every reader: which lines carry a value, and what a request
or reply line may start with (pure functions)."""

from __future__ import annotations

RETRIEVAL = {"get", "gets"}
RETRIEVAL_TOUCH = {"gat", "gats"}  # gat <exptime> <key>*
STORAGE = {"set", "add", "replace", "append", "prepend", "cas"}
LOOKUPS = {"delete", "incr", "decr", "touch"}
META = {"mg", "ms", "md", "ma"}
# every command memcached 1.6 knows: a request line starts with one of them
COMMANDS = RETRIEVAL | RETRIEVAL_TOUCH | STORAGE | LOOKUPS | META | {
    "mn", "me", "stats", "version", "flush_all", "verbosity", "quit", "shutdown", "watch",
    "lru_crawler", "lru", "slabs", "cache_memlimit", "misbehave", "debugtime", "extstore",
    "config", "verify",
}  # fmt: skip
# every reply line starts with one of them (or with digits: incr/decr)
REPLY_WORDS = {
    "VALUE", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK",
    "ERROR", "CLIENT_ERROR", "SERVER_ERROR", "STAT", "VERSION", "ITEM", "RESET", "BUSY", "CONFIG",
    "VA", "HD", "EN", "NF", "NS", "EX", "MN", "ME",
}  # fmt: skip


def _count(word: str) -> int | None:
    return int(word) if word.isdigit() else None


def data_size(words: list[str], direction: str | None) -> int | None:
    """The length of the value block that follows this line (None: no value follows).
    `direction`: "req", "resp" or None (either)."""
    if not words:
        return None
    first = words[0]
    if direction != "resp":
        if first in STORAGE and len(words) >= 5:
            return _count(words[4])
        if first == "ms" and len(words) >= 3:
            return _count(words[2])
    if direction != "req":
        if first == "VALUE" and len(words) >= 4:
            return _count(words[3])
        if first == "VA" and len(words) >= 2:
            return _count(words[1])
    return None


def plausible_line(content: str, direction: str | None, complete: bool = True) -> bool:
    """Could `content` start a memcached request (req) or reply (resp) line? An incomplete line
    (cut by the end of a packet) needs only to begin like one."""
    content = content.removesuffix("\r")
    if not content:
        return False
    word, sep, _ = content.partition(" ")
    words = (COMMANDS if direction != "resp" else set()) | (REPLY_WORDS if direction != "req" else set())
    if word in words or (direction != "req" and word.isdigit()):
        return True
    if not complete and not sep:  # only the start of the first word so far
        return any(w.startswith(word) for w in words) or (direction != "req" and word.isdigit())
    return False


def is_reply(line: str) -> bool:
    """A line of undirected text that is a reply (for bare protocol text without addresses)."""
    word = line.strip().partition(" ")[0]
    return word in REPLY_WORDS or word.isdigit()
