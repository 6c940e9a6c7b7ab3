from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connectors.settings import EntraSettings, GoogleSettings, OktaSettings
from recert.config import ConfigError, load_settings

FULL = """
catalog_dir = "catalog"
iam_email = "iam@acme.test"

[database]
url = "sqlite:///inventory.db"

[smtp]
host = "mail.acme.test"
port = 587
starttls = true
username = "recert"
password_env = "SMTP_PASSWORD"
from_address = "recert@acme.test"

[[tenants]]
name = "okta-prod"
kind = "okta"
org_url = "https://acme.okta.com"
api_token_env = "OKTA_API_TOKEN"
protected = ["0oaBREAKGLASS"]
enforcement = "enforce"

[tenants.enforce]
client_id = "0oaWRITER"
private_key_file = "okta-key.pem"

[[tenants]]
name = "entra-prod"
kind = "entra"
tenant_id = "11111111-2222-3333-4444-555555555555"
client_id = "66666666-7777-8888-9999-000000000000"
client_secret_env = "ENTRA_CLIENT_SECRET"
graph_url = "https://graph.microsoft.us"
authority = "https://login.microsoftonline.us"
ca_bundle = "proxy-ca.pem"

[[tenants]]
name = "google-prod"
kind = "google"
credentials_file = "sa-key.json"
admin_subject = "admin@acme.test"
projects = ["acme-prod"]
"""

ENV = {"OKTA_API_TOKEN": "00tok", "ENTRA_CLIENT_SECRET": "s3cret", "SMTP_PASSWORD": "pw"}


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "okta-key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "sa-key.json").write_text('{"type": "service_account"}')
    (tmp_path / "proxy-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "recert.toml"
    path.write_text(text)
    return path


def test_full_config_resolves_secrets_and_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL), ENV)
    okta, entra, google = settings.tenants
    assert isinstance(okta.read, OktaSettings)
    assert okta.read.api_token is not None
    assert okta.read.api_token.get_secret_value() == "00tok"
    assert okta.protected == ("0oaBREAKGLASS",)
    assert okta.enforcement == "enforce"
    write_okta = okta.write_settings
    assert isinstance(write_okta, OktaSettings)
    assert write_okta.api_token is None, "the enforce table replaces the read credential"
    assert write_okta.client_id == "0oaWRITER"
    assert str(write_okta.org_url) == "https://acme.okta.com/"
    assert isinstance(entra.read, EntraSettings)
    assert str(entra.read.graph_url) == "https://graph.microsoft.us/"
    assert entra.read.ca_bundle == str(tmp_path / "proxy-ca.pem")
    assert entra.enforcement == "dry-run", "dry-run is the default mode"
    assert entra.write_settings is entra.read
    assert isinstance(google.read, GoogleSettings)
    assert google.read.customer == "my_customer"
    assert str(google.read.token_uri) == "https://oauth2.googleapis.com/token"
    assert settings.catalog_dir == tmp_path / "catalog"
    assert settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "pw"
    assert settings.database.url == "sqlite:///inventory.db"
    assert settings.campaigns.attestation_days == 14


def test_secrets_never_show_in_reprs(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL), ENV)
    assert "00tok" not in repr(settings)
    assert "s3cret" not in repr(settings)


def test_environment_overrides_database_and_broker(tmp_path: Path) -> None:
    env = {**ENV, "RECERT_DATABASE_URL": "postgresql+psycopg://db/recert"}
    env["RECERT_BROKER_URL"] = "redis://broker:6379/1"
    settings = load_settings(write(tmp_path, FULL), env)
    assert settings.database.url == "postgresql+psycopg://db/recert"
    assert settings.celery.broker_url == "redis://broker:6379/1"


def test_missing_default_file_means_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.tenants == ()
    assert settings.database.url == "sqlite:///recert.db"


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (('kind = "okta"', 'kind = "onelogin"'), "tenants[0].kind", "must be one of"),
        (('org_url = "https://acme.okta.com"', 'org_url = "acme okta"'), "org_url", "URL"),
        (('admin_subject = "admin@acme.test"\n', ""), "admin_subject", "missing"),
        (("port = 587", "port = 99999"), "smtp.port", "less than or equal"),
        (("[database]", "[databse]"), "databse", "unknown key"),
        (
            ('projects = ["acme-prod"]', 'projects = ["acme-prod"]\nregion = "eu"'),
            "region",
            "unknown key",
        ),
        (('enforcement = "enforce"', 'enforcement = "yolo"'), "enforcement", "Input should be"),
        (('iam_email = "iam@acme.test"', 'iam_email = "IAM team"'), "iam_email", "email address"),
        (('iam_email = "iam@acme.test"', "iam_email = 7"), "iam_email", "valid string"),
        (('catalog_dir = "catalog"', "catalog_dir = 7"), "catalog_dir", "folder path"),
        (('catalog_dir = "catalog"', 'catalog_dir = "sa-key.json"'), "catalog_dir", "not a folder"),
        (('ca_bundle = "proxy-ca.pem"', 'ca_bundle = "gone.pem"'), "ca_bundle", "no such file"),
        (
            (
                'url = "sqlite:///inventory.db"',
                'url = "sqlite:///inventory.db"\n[risk]\nreview_cadence_days = { high = 30 }',
            ),
            "risk.review_cadence_days",
            "missing medium, low",
        ),
        (
            (
                'url = "sqlite:///inventory.db"',
                'url = "sqlite:///inventory.db"\n[risk]\n'
                "review_cadence_days = { high = 30, medium = 0, low = 90 }",
            ),
            "risk.review_cadence_days.medium",
            "greater than 0",
        ),
        (
            ('client_secret_env = "ENTRA_CLIENT_SECRET"', "client_secret_env = 5"),
            "client_secret_env",
            "must name an environment variable",
        ),
        (('name = "google-prod"', 'name = "okta-prod"'), "tenants", "duplicate tenant name"),
        (("[smtp]", "[smtp"), "", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    old, new = change
    assert old in FULL
    path = write(tmp_path, FULL.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        load_settings(path, ENV)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert key in message
    assert problem in message
    assert "\n" not in message


def test_loading_reads_no_secret_until_it_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    (tmp_path / "sa-key.json").unlink()
    settings = load_settings(path, {})  # no variable set, one key file gone: still loads
    okta, _, google = settings.tenants
    assert okta.read.api_token is not None
    with pytest.raises(ConfigError) as unset:
        okta.read.api_token.get_secret_value()
    assert str(unset.value) == (
        f"{path}: tenants[0] (okta-prod).api_token_env: environment variable OKTA_API_TOKEN "
        "is unset"
    )
    with pytest.raises(ConfigError, match=r"tenants\[2\] \(google-prod\)\.credentials_file: "):
        google.read.credentials.get_secret_value()  # type: ignore[union-attr]
    assert settings.tenant("okta-prod") == okta, "comparing settings reads no secret"
    env: dict[str, str] = {}
    lazy = load_settings(path, env)
    env["OKTA_API_TOKEN"] = "rotated"
    token = lazy.tenant("okta-prod").read.api_token
    assert token is not None
    assert token.get_secret_value() == "rotated", "read when used, not when loaded"


def test_signing_key_and_smtp_password_are_read_when_used(tmp_path: Path) -> None:
    text = FULL + '\n[web]\nsecret_key_env = "RECERT_WEB_KEY"\n'
    settings = load_settings(write(tmp_path, text), {})
    with pytest.raises(ConfigError, match=r"web\.secret_key_env: environment variable RECERT_WEB"):
        settings.signing_key()
    assert settings.smtp.password is not None
    with pytest.raises(ConfigError, match=r"smtp\.password_env: environment variable SMTP_PASS"):
        settings.smtp.password.get_secret_value()
    signed = load_settings(write(tmp_path, text), {"RECERT_WEB_KEY": "k1"})
    assert signed.signing_key() == b"k1"


def test_cli_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.replace('kind = "okta"', 'kind = "onelogin"', 1))
    result = subprocess.run(
        [sys.executable, "-m", "recert", "init"],
        env={**ENV, "RECERT_CONFIG": str(path), "PATH": ""},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert "tenants[0].kind" in result.stderr


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(environ={"RECERT_CONFIG": str(tmp_path / "absent.toml")})


def test_the_readme_config_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, example)
    env = {"OKTA_API_TOKEN": "a", "OKTA_WRITE_TOKEN": "b", "ENTRA_CLIENT_SECRET": "c"}
    settings = load_settings(path, {**env, "RECERT_OIDC_SECRET": "d"})
    assert [t.kind for t in settings.tenants] == ["okta", "entra", "google"]
    assert settings.web.oidc is not None
    assert settings.owner_rules[0].owner == "{team}-owners@acme.com"
