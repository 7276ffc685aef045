"""The fleet path: get one published file onto every Varnish host, checked there and swapped in
atomically, with the versions it replaced kept for a one-command rollback.

`webops gate build` runs once, on the publisher's host. On each Varnish host, either
- the file arrives by any copy tool into a staging path (never the live path: a copy writes in
  place, and the live file must only ever change by rename), then `webops gate install FILE`; or
- `webops gate pull URL` fetches it from the publisher over HTTP (any static web server in front
  of the publisher's directory), from cron or a systemd timer: a host that was down catches up
  at its next run, and a run with nothing new changes nothing.

Either way the file is copied beside the live one, checked there as varnishd will read it
(integrity, schema, the churn against this host's live file, publish.check), fsynced, and
renamed over the live file; the file it replaces stays as a hard link in `<db>.versions/`
(the newest `keep`), and `webops gate rollback` renames the newest of them back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .config import Config
from .publish import PublishError, check, discard, fsync_dir, remove_stale, swap_lock, temp_path

ROLLED_BACK = (
    ".rolled-back."  # files a rollback replaced (`<db>.rolled-back.<time>`): kept, outside the ordering
)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Installed:
    lines: list[str]


def versions_dir(cfg: Config) -> Path:
    return cfg.db.with_name(cfg.db.name + ".versions")


def versions(cfg: Config) -> list[Path]:
    """The kept versions, oldest first (their names sort by the time they were replaced)."""
    d = versions_dir(cfg)
    if not d.is_dir():
        return []
    return sorted(
        p for p in d.iterdir() if p.name.startswith(cfg.db.name + ".") and ROLLED_BACK not in p.name
    )


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def install(
    source: Path, cfg: Config, force: bool = False, keep: int = 5, clean: bool = True, name: str = ""
) -> Installed:
    """Check `source` against the live file and swap it in; nothing changes on any failure.
    `clean`: first remove what killed publishes, installs and pulls left (pull did already);
    `name`: what to call the file in messages (the URL it came from)."""
    live = cfg.db
    name = name or str(source)
    if not live.parent.is_dir():
        raise PublishError(f"{live.parent}: no such directory")
    if clean:
        remove_stale(live)
    digest = sha256(source)
    if digest is None:
        raise PublishError(f"{name}: no such file")
    tmp = temp_path(live)
    try:
        with swap_lock(live):
            if digest == sha256(live):
                return Installed([f"{live} is already this file ({digest[:12]}): nothing to do"])
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
            checked = check(tmp, live if live.exists() else None, cfg, force)
            os.chmod(tmp, 0o644)  # varnishd's worker user reads it
            kept = _keep_live(cfg)
            os.replace(tmp, live)
            fsync_dir(live.parent)
    except PublishError as e:
        raise PublishError(str(e).replace(str(tmp), name)) from None
    except OSError as e:
        raise PublishError(
            f"{live.parent}: {e.strerror or e}" if e.filename != str(source) else f"{name}: {e.strerror}"
        ) from None
    finally:
        discard(tmp)
    _prune(cfg, keep)
    out = [f"installed {name} as {live}: {checked.users:,} users, {checked.profiles:,} with a profile"]
    if checked.previous is not None:
        out.append(
            f"since the live file: {checked.previous:,} -> {checked.profiles:,} profiles, "
            f"+{checked.added:,} -{checked.removed:,}"
        )
    if kept is not None:
        out.append(f"the file it replaced is kept as {kept} (webops gate rollback)")
    return Installed(out)


def _keep_live(cfg: Config) -> Path | None:
    """A hard link to the live file under versions/, named by the time: the same inode, no copy."""
    if not cfg.db.exists():
        return None
    d = versions_dir(cfg)
    d.mkdir(mode=0o755, exist_ok=True)
    kept = d / f"{cfg.db.name}.{_stamp()}"
    os.link(cfg.db, kept)
    return kept


def _prune(cfg: Config, keep: int) -> None:
    """The newest `keep` versions stay, and the newest `keep` files rollbacks replaced."""
    d = versions_dir(cfg)
    rolled = sorted(d.glob(cfg.db.name + ROLLED_BACK + "*")) if d.is_dir() else []
    for group in (versions(cfg), rolled):
        for old in group[: max(0, len(group) - keep)]:
            discard(old)


def rollback(cfg: Config, keep: int = 5) -> Installed:
    """The newest kept version becomes live again (checked, churn guard aside: a rollback is
    deliberate); the file it replaces is kept as `<db>.rolled-back.<time>` (the newest `keep`)."""
    live = cfg.db
    tmp = temp_path(live)
    newest = versions_dir(cfg)
    try:
        with swap_lock(live):
            kept = versions(cfg)
            if not kept:
                raise PublishError(f"{versions_dir(cfg)}: no previous version to roll back to")
            newest = kept[-1]
            os.link(newest, tmp)
            checked = check(tmp, None, cfg, force=True)
            aside = None
            if live.exists():
                aside = versions_dir(cfg) / f"{live.name}{ROLLED_BACK}{_stamp()}"
                os.link(live, aside)
            os.replace(tmp, live)
            fsync_dir(live.parent)
            newest.unlink()
    except PublishError as e:
        raise PublishError(str(e).replace(str(tmp), str(newest))) from None
    except OSError as e:
        raise PublishError(f"{live.parent}: {e.strerror or e}") from None
    finally:
        discard(tmp)
    _prune(cfg, keep)
    return Installed(
        [
            f"rolled back {live} to {newest.name}: {checked.users:,} users, "
            f"{checked.profiles:,} with a profile",
            f"{len(kept) - 1} older versions left; the file it replaced is kept as {aside}",
        ]
    )


def pull(
    url: str, cfg: Config, force: bool = False, keep: int = 5, timeout: float = 60, max_bytes: int = 4 << 30
) -> Installed:
    """Fetch the published file over HTTP(S) and install it; the same file again changes nothing."""
    if not url.startswith(("http://", "https://")):
        raise PublishError(f"{url}: expected an http:// or https:// URL")
    live = cfg.db
    if not live.parent.is_dir():
        raise PublishError(f"{live.parent}: no such directory")
    remove_stale(live)
    part = live.with_name(f".{live.name}.pull-{os.getpid()}")
    try:
        deadline = time.monotonic() + timeout
        with urllib.request.urlopen(url, timeout=min(timeout, 30)) as r, open(part, "wb") as out:
            expected = r.headers.get("Content-Length")
            got = 0
            while chunk := r.read1(CHUNK):  # whatever has arrived: the deadline is looked at often
                got += len(chunk)
                if got > max_bytes:
                    raise PublishError(f"{url}: larger than {max_bytes:,} bytes")
                if time.monotonic() > deadline:
                    raise PublishError(f"{url}: not downloaded within {timeout:g} s (--timeout)")
                out.write(chunk)
        if expected is not None and int(expected) != got:
            raise PublishError(f"{url}: got {got:,} of {int(expected):,} bytes (cut short)")
        return install(part, cfg, force, keep, clean=False, name=url)
    except urllib.error.HTTPError as e:
        raise PublishError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PublishError(f"{url}: {reason}") from None
    finally:
        discard(part)
