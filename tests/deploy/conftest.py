"""Shared helpers for the deployment checks (see deploycheck.py)."""

from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "binary: starts target/release/bayeux-edge the way the container image does"
    )


@pytest.fixture
def broken(tmp_path):
    """broken(source, old, new, name=None): a copy of `source` with `old` replaced by `new`.

    The replacement must match exactly once, so a test notices when the file it
    breaks has changed shape instead of silently testing an unbroken copy.
    """

    def make(source: Path, old: str, new: str, name: str | None = None) -> Path:
        text = source.read_text()
        count = text.count(old)
        assert count == 1, f"{source.name}: {old!r} occurs {count} times, expected once"
        target = tmp_path / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(old, new))
        target.chmod(source.stat().st_mode & 0o777)
        return target

    return make
