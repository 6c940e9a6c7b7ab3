"""Deterministic generator of an Okta org: users, apps of every sign-on mode, scope grants,
API tokens and System Log events, plus the ground truth a test checks a connector against."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

BUILTIN_APPS = {
    "saasure": "Okta Admin Console",
    "okta_enduser": "Okta Dashboard",
    "okta_browser_plugin": "Okta Browser Plugin",
    "okta_flow_sso": "Okta Workflows",
}
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    "Security Team\r\nBcc: x@evil",
    "invoice\u202egpj.exe",
    "A" * 10_240,
)
READ_SCOPES = ("okta.apps.read", "okta.users.read", "okta.logs.read", "okta.groups.read")
RISKY_SCOPES = ("okta.apps.manage", "okta.users.manage", "okta.roles.manage")
OTHER_MODES = ("SAML_2_0", "AUTO_LOGIN", "BOOKMARK", "SECURE_PASSWORD_STORE", "WS_FEDERATION")
RETENTION = timedelta(days=90)
PLACEHOLDER_BASE = "https://org.okta.example"  # replaced by the served URL


def okta_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Truth:
    """What a correct connector must report for the seeded org."""

    oauth_apps: dict[str, str] = field(default_factory=dict)  # app id -> client_id
    builtins: set[str] = field(default_factory=set)
    other_apps: set[str] = field(default_factory=set)  # SAML/SWA/...: not principals
    grants: dict[str, set[str]] = field(default_factory=dict)  # app id -> scope ids
    api_tokens: dict[str, str] = field(default_factory=dict)  # token id -> user id
    creators: dict[str, str] = field(default_factory=dict)  # app id -> user id
    departed: set[str] = field(default_factory=set)  # DEPROVISIONED user ids
    last_used: dict[str, datetime | None] = field(default_factory=dict)  # app id -> last use
    malformed_apps: int = 0
    hostile_apps: set[str] = field(default_factory=set)


@dataclass
class OrgData:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    api_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    truth: Truth = field(default_factory=Truth)


class _Generator:
    def __init__(self, seed: int, now: datetime, base_url: str) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.base_url = base_url
        self.org = OrgData()
        self._serial = 0

    def okta_id(self, prefix: str) -> str:
        self._serial += 1
        tail = "".join(self.rng.choice("abcdefghijkLMNOPQRSTUVWXyz0123456789") for _ in range(9))
        return f"{prefix}{self._serial:05d}{tail}"

    def days_ago(self, low: int, high: int) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low, high))

    # -- people ---------------------------------------------------------------------------
    def user(self, status: str, manager: dict[str, Any] | None = None) -> dict[str, Any]:
        uid = self.okta_id("00u")
        first = self.rng.choice(["Ada", "Grace", "Linus", "Barbara", "Ken", "Radia", "Edsger"])
        last = self.rng.choice(["Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Perlman"])
        login = f"{first.lower()}.{last.lower()}.{len(self.org.users)}@example.com"
        created = self.days_ago(200, 2000)
        profile = {
            "firstName": first,
            "lastName": last,
            "email": login,
            "login": login,
            "displayName": f"{first} {last}",
            "managerId": manager["id"] if manager else None,
            "manager": manager["profile"]["displayName"] if manager else None,
        }
        user = {
            "id": uid,
            "status": status,
            "created": okta_time(created),
            "activated": okta_time(created),
            "statusChanged": okta_time(self.days_ago(1, 150)),
            "lastLogin": okta_time(self.days_ago(0, 30)),
            "lastUpdated": okta_time(self.days_ago(0, 150)),
            "passwordChanged": None,
            "type": {"id": "oty0000000000000000"},
            "profile": profile,
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": f"{self.base_url}/api/v1/users/{uid}"}},
        }
        self.org.users[uid] = user
        if status == "DEPROVISIONED":
            self.org.truth.departed.add(uid)
        return user

    def people(self, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        managers = [self.user("ACTIVE") for _ in range(max(2, count // 10))]
        active = [self.user("ACTIVE", self.rng.choice(managers)) for _ in range(count)]
        for status in ("SUSPENDED", "STAGED", "LOCKED_OUT"):
            self.user(status, self.rng.choice(managers))
        departed = [self.user("DEPROVISIONED", self.rng.choice(managers)) for _ in range(3)]
        return managers + active, departed

    # -- apps -----------------------------------------------------------------------------
    def app_shell(self, name: str, label: str, mode: str, status: str) -> dict[str, Any]:
        app_id = self.okta_id("0oa")
        return {
            "id": app_id,
            "name": name,
            "label": label,
            "status": status,
            "signOnMode": mode,
            "created": okta_time(self.days_ago(1, 900)),
            "lastUpdated": okta_time(self.days_ago(0, 30)),
            "accessibility": {"selfService": False},
            "visibility": {"autoSubmitToolbar": False, "hide": {"iOS": False, "web": False}},
            "features": [],
            "credentials": {
                "userNameTemplate": {"template": "${source.login}", "type": "BUILT_IN"}
            },
            "settings": {"app": {}},
            "_links": {"self": {"href": f"{self.base_url}/api/v1/apps/{app_id}"}},
        }

    def oauth_app(self, label: str, service: bool) -> dict[str, Any]:
        status = "ACTIVE" if self.rng.random() < 0.9 else "INACTIVE"
        app = self.app_shell("oidc_client", label, "OPENID_CONNECT", status)
        client_id = app["id"]
        methods = (
            ["private_key_jwt", "client_secret_basic"]
            if service
            else ["none", "client_secret_post"]
        )
        method = self.rng.choice(methods)
        oauth_client: dict[str, Any] = {
            "autoKeyRotation": True,
            "client_id": client_id,
            "token_endpoint_auth_method": method,
        }
        if method.startswith("client_secret"):
            oauth_client["client_secret"] = f"{self.rng.getrandbits(200):050x}"
        app["credentials"]["oauthClient"] = oauth_client
        grant_types = ["client_credentials"] if service else ["authorization_code", "refresh_token"]
        settings: dict[str, Any] = {
            "grant_types": grant_types,
            "response_types": ["token"] if service else ["code"],
            "application_type": "service" if service else "web",
            "issuer_mode": "ORG_URL",
        }
        if not service:
            settings["redirect_uris"] = ["https://app.example.com/callback"]
        if method == "private_key_jwt":
            settings["jwks"] = {
                "keys": [
                    {
                        "kty": "RSA",
                        "use": "sig",
                        "alg": "RS256",
                        "kid": f"kid-{client_id[-6:]}",
                        "e": "AQAB",
                        "n": "x" * 16,
                    }
                ]
            }
        app["settings"]["oauthClient"] = settings
        return app

    def grants_for(self, app: dict[str, Any], creator: str | None) -> None:
        scopes = self.rng.sample(READ_SCOPES, self.rng.randint(0, 2))
        if self.rng.random() < 0.25:
            scopes.append(self.rng.choice(RISKY_SCOPES))
        grants: dict[str, dict[str, Any]] = {}
        for scope in scopes:
            grant = self.grant(app, scope, creator or next(iter(self.org.users)))
            grants[grant["id"]] = grant
        self.org.grants[app["id"]] = grants
        self.org.truth.grants[app["id"]] = set(scopes)

    def grant(self, app: dict[str, Any], scope: str, admin: str) -> dict[str, Any]:
        grant_id = self.okta_id("oag")
        at = okta_time(self.days_ago(0, 300))
        return {
            "id": grant_id,
            "status": "ACTIVE",
            "created": at,
            "createdBy": {"id": admin, "type": "User"},
            "lastUpdated": at,
            "issuer": self.base_url,
            "clientId": app["credentials"]["oauthClient"]["client_id"],
            "scopeId": scope,
            "source": "ADMIN",
            "_links": {
                "app": {"href": f"{self.base_url}/api/v1/apps/{app['id']}"},
                "self": {"href": f"{self.base_url}/api/v1/apps/{app['id']}/grants/{grant_id}"},
            },
        }

    def api_token(self, owner: dict[str, Any], expired: bool) -> None:
        token_id = self.okta_id("00T")
        created = self.days_ago(40, 700)
        expires = self.days_ago(1, 20) if expired else self.now + timedelta(days=25)
        network: dict[str, Any] = {"connection": "ANYWHERE"}
        if self.rng.random() < 0.3:
            network = {"connection": "ZONE", "include": ["nzo1corpnet"], "exclude": []}
        self.org.api_tokens[token_id] = {
            "id": token_id,
            "name": f"{owner['profile']['firstName']}'s automation token",
            "userId": owner["id"],
            "clientName": "Okta API",
            "tokenWindow": None,  # as recorded from real Okta (the spec says string)
            "network": network,
            "expiresAt": okta_time(expires),
            "created": okta_time(created),
            "lastUpdated": okta_time(created),
            "_links": {"self": {"href": f"{self.base_url}/api/v1/api-tokens/{token_id}"}},
        }
        self.org.truth.api_tokens[token_id] = owner["id"]

    # -- System Log -----------------------------------------------------------------------
    def event(
        self, event_type: str, at: datetime, actor: dict[str, Any], target: list[Any]
    ) -> None:
        self.org.logs.append(
            {
                "uuid": f"{self.rng.getrandbits(128):032x}",
                "published": okta_time(at),
                "eventType": event_type,
                "version": "0",
                "severity": "INFO",
                "displayMessage": event_type,
                "actor": actor,
                "target": target,
                "outcome": {"result": "SUCCESS"},
                "client": {"ipAddress": "203.0.113.7", "userAgent": {"rawUserAgent": "curl"}},
                "transaction": {"type": "WEB", "id": "tx1", "detail": {}},
                "debugContext": {"debugData": {}},
                "authenticationContext": {"externalSessionId": "sess"},
                "securityContext": {},
                "request": {"ipChain": []},
            }
        )

    def creation_event(self, app: dict[str, Any], creator: dict[str, Any], at: datetime) -> None:
        actor = {
            "id": creator["id"],
            "type": "User",
            "alternateId": creator["profile"]["login"],
            "displayName": creator["profile"]["displayName"],
        }
        target = [{"id": app["id"], "type": "AppInstance", "alternateId": app["label"]}]
        self.event("application.lifecycle.create", at, actor, target)

    def use_events(self, app: dict[str, Any], service: bool) -> datetime | None:
        if self.rng.random() < 0.3:
            return None  # stale: no use inside the retention window
        uses = sorted(self.days_ago(0, 89) for _ in range(self.rng.randint(1, 3)))
        client_id = app["credentials"]["oauthClient"]["client_id"]
        for at in uses:
            if service:
                actor = {"id": client_id, "type": "PublicClientApp", "alternateId": client_id}
                target = [{"id": "aut1", "type": "access_token", "alternateId": "token"}]
                self.event("app.oauth2.token.grant.access_token", at, actor, target)
            else:
                user = self.rng.choice(list(self.org.users.values()))
                actor = {"id": user["id"], "type": "User", "alternateId": user["profile"]["login"]}
                target = [{"id": app["id"], "type": "AppInstance", "alternateId": app["label"]}]
                self.event("user.authentication.sso", at, actor, target)
        return uses[-1]


def generate(
    seed: int, size: int, now: datetime, base_url: str, oauth_share: float = 0.45
) -> OrgData:
    """An org of `size` apps (built-ins and three malformed records included)."""
    gen = _Generator(seed, now, base_url)
    org, truth = gen.org, gen.org.truth
    actives, departed = gen.people(max(10, size // 20))
    for name, label in BUILTIN_APPS.items():
        app = gen.app_shell(
            name,
            label,
            "OPENID_CONNECT" if name != "okta_browser_plugin" else "BROWSER_PLUGIN",
            "ACTIVE",
        )
        org.apps[app["id"]] = app
        truth.builtins.add(app["id"])
    hostile = list(HOSTILE_NAMES)
    for index in range(max(0, size - len(BUILTIN_APPS) - 3)):
        if gen.rng.random() >= oauth_share:
            mode = gen.rng.choice(OTHER_MODES)
            app = gen.app_shell(f"custom_{mode.lower()}", f"Web app {index}", mode, "ACTIVE")
            org.apps[app["id"]] = app
            truth.other_apps.add(app["id"])
            continue
        service = gen.rng.random() < 0.5
        label = hostile.pop() if hostile else f"{'Service' if service else 'Portal'} {index}"
        app = gen.oauth_app(label, service)
        org.apps[app["id"]] = app
        truth.oauth_apps[app["id"]] = app["credentials"]["oauthClient"]["client_id"]
        if label in HOSTILE_NAMES:
            truth.hostile_apps.add(app["id"])
        creator = _pick_creator(gen, app, actives, departed)
        gen.grants_for(app, creator)
        truth.last_used[app["id"]] = gen.use_events(app, service)
    _add_malformed(gen)
    for index, owner in enumerate(actives[: max(3, size // 50)] + departed[:1]):
        gen.api_token(owner, expired=index % 4 == 3)
    org.logs.sort(key=lambda event: event["published"])
    return org


def _pick_creator(
    gen: _Generator,
    app: dict[str, Any],
    actives: list[dict[str, Any]],
    departed: list[dict[str, Any]],
) -> str | None:
    roll = gen.rng.random()
    if roll < 0.2:
        return None  # created before the log's retention: orphaned unless someone claims it
    creator = gen.rng.choice(departed if roll < 0.3 else actives)
    created = gen.days_ago(5, 85)
    app["created"] = okta_time(created)
    gen.creation_event(app, creator, created)
    gen.org.truth.creators[app["id"]] = creator["id"]
    return str(creator["id"])


def _add_malformed(gen: _Generator) -> None:
    no_id = gen.oauth_app("No id", service=True)
    del no_id["id"]
    wrong_label = gen.oauth_app("x", service=True)
    wrong_label["label"] = 12345
    bad_status = gen.oauth_app("Bad status", service=False)
    bad_status["status"] = "HALF_ALIVE"
    for index, app in enumerate((no_id, wrong_label, bad_status)):
        gen.org.apps[app.get("id") or f"0oaMALFORMED{index}"] = app
    gen.org.truth.malformed_apps = 3
