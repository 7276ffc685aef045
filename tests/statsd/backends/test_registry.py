"""Backends are registry entries: a module in backends/ with one @register class is a backend,
named in config files by its name, its keys validated and documented like the core keys."""

from __future__ import annotations

import pkgutil

import pytest

from webops.statsd import backends
from webops.statsd import settings as statsd_config
from webops.statsd.backends.base import REGISTRY


def test_every_backend_module_registers_one_backend_whose_keys_join_the_schema() -> None:
    helpers = {"base", "naming"}
    modules = {m.name for m in pkgutil.iter_modules(backends.__path__)} - helpers
    assert modules == {cls.__module__.rsplit(".", 1)[1] for cls in REGISTRY.values()}
    for cls in REGISTRY.values():
        assert set(cls.CONFIG_KEYS) <= set(statsd_config.SCHEMA)
        assert set(cls.SECTIONS) <= set(statsd_config.SECTIONS)
        for spec in (cls.name, f"./backends/{cls.name}", cls.name.capitalize()):
            assert statsd_config.backend_name(spec) == cls.name


def test_a_backend_key_is_validated_with_the_file_and_line(tmp_path) -> None:
    path = tmp_path / "c.js"
    path.write_text('{\n  backends: ["./backends/repeater"],\n  repeaterProtocol: "sctp",\n}')
    with pytest.raises(statsd_config.ConfigError, match=r"c\.js:3: repeaterProtocol: expected one of"):
        statsd_config.load(str(path))
    with pytest.raises(statsd_config.ConfigError, match=r"unknown backend '\./backends/nope'"):
        statsd_config.build({"backends": ["./backends/nope"]})
