"""Settings: defaults, environment, validation with readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsgw.config import SettingsError, load_settings


def test_defaults_serve_sqlite_in_data_on_localhost_3000(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMSGW_HOST", "SMSGW_PORT", "SMSGW_DATA_DIR", "SMSGW_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    assert settings.database_scheme == "sqlite"
    assert (
        settings.resolved_database_url == f"sqlite+aiosqlite:///{Path('data').resolve()}/smsgw.db"
    )
    assert settings.default_region is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMSGW_PORT", "8080")
    monkeypatch.setenv("SMSGW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMSGW_DEFAULT_REGION", "de")
    settings = load_settings()
    assert settings.port == 8080
    assert settings.default_region == "DE"
    assert str(tmp_path) in settings.resolved_database_url


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("sqlite:////srv/smsgw.db", "sqlite+aiosqlite:////srv/smsgw.db"),
        ("postgresql://u:p@db/smsgw", "postgresql+psycopg://u:p@db/smsgw"),
        ("postgres://u:p@db/smsgw", "postgresql+psycopg://u:p@db/smsgw"),
    ],
)
def test_database_urls_are_normalised(url: str, resolved: str) -> None:
    assert load_settings(database_url=url).resolved_database_url == resolved


def test_every_bad_setting_is_reported_by_name() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(port=0, default_region="Atlantis", database_url="ftp://x")
    message = str(error.value)
    assert "SMSGW_PORT" in message
    assert "SMSGW_DEFAULT_REGION" in message
    assert "SMSGW_DATABASE_URL" in message


def test_data_dir_must_not_be_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(SettingsError, match="not a directory"):
        load_settings(data_dir=file)


def test_inbox_exports_settle_after_the_apps_first_post_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app retries a failed webhook post after 5, 10, 20 s: an export closing sooner than
    those three would leave the retried messages out of its batch."""
    monkeypatch.delenv("SMSGW_INBOX_EXPORT_SETTLE_SECONDS", raising=False)
    assert load_settings().inbox_export_settle_seconds >= 5 + 10 + 20
