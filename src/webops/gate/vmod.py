"""`webops gate vmod`: build the VMOD on this host, against this host's varnishd.

A VMOD is bound to the exact varnishd it was built for (Varnish's strict ABI), so it is built
where it runs, from the C and .vcc files shipped in this package, with Varnish's own vmodtool.py
and the compiler flags `pkg-config varnishapi sqlite3` gives (Debian: libvarnishapi-dev,
libsqlite3-dev, gcc).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

LIBRARY = "libvmod_gate.so"


class BuildError(RuntimeError):
    """What is missing or failed, in one line."""


def _pkg_config(*args: str) -> str:
    if shutil.which("pkg-config") is None:
        raise BuildError("pkg-config not found (apt-get install pkg-config)")
    r = subprocess.run(["pkg-config", *args], capture_output=True, text=True)
    if r.returncode != 0:
        missing = "libvarnishapi-dev" if "varnishapi" in " ".join(args) else "libsqlite3-dev"
        raise BuildError(f"pkg-config {' '.join(args)}: not found (apt-get install {missing})")
    return r.stdout.strip()


def default_dir() -> Path:
    """Where varnishd looks for `import gate;`."""
    return Path(_pkg_config("--variable=vmoddir", "varnishapi"))


def build(out: Path) -> Path:
    """Compile into `out`; returns the library's path. Raises BuildError."""
    vmodtool = _pkg_config("--variable=vmodtool", "varnishapi")
    cflags = _pkg_config("--cflags", "varnishapi", "sqlite3").split()
    libs = _pkg_config("--libs", "sqlite3").split()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BuildError("no C compiler (apt-get install gcc)")
    with tempfile.TemporaryDirectory(prefix="webops-vmod-") as tmp:
        work = Path(tmp)
        for name in ("vmod_gate.c", "vmod_gate.vcc"):
            (work / name).write_bytes(resources.files("webops.gate").joinpath("vmod", name).read_bytes())
        (work / "config.h").write_text("")  # the generated interface includes autotools' config.h
        _run([sys.executable, vmodtool, "-o", "vcc_gate_if", "vmod_gate.vcc"], work)
        flags = ["-shared", "-fPIC", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]
        _run(
            [cc, *flags, "-std=gnu11", "-I.", *cflags, "-o", LIBRARY, "vmod_gate.c", "vcc_gate_if.c", *libs],
            work,
        )
        out.mkdir(parents=True, exist_ok=True)
        target = out / LIBRARY
        staged = out / f".{LIBRARY}.new"
        shutil.copyfile(work / LIBRARY, staged)
        staged.chmod(0o755)
        staged.replace(target)  # a running varnishd keeps the old one mapped
    return target


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        first = next((line for line in (r.stderr + r.stdout).splitlines() if line.strip()), "")
        raise BuildError(f"{Path(cmd[0]).name} failed: {first}")
