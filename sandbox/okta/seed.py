"""Deterministic generator of an Okta org: users and groups, apps of every sign-on mode with
their scope grants, client secrets and keys, API tokens, AI agents with owners, keys and
connections, and months of System Log, plus the ground truth a test checks a connector
against."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.okta.syslog import SSO, SystemLog, okta_time

BUILTIN_APPS = {
    "saasure": "Okta Admin Console",  # OPENID_CONNECT without oauthClient (provider-facts.md)
    "okta_enduser": "Okta Dashboard",
    "okta_browser_plugin": "Okta Browser Plugin",
    "okta_flow_sso": "Okta Workflows",
    "okta_atspoke_sso": "Okta Atspoke",
    "okta_oin_submission_tester_app": "OIN Submission Tester",
}
BUILTINS_WITH_CLIENT = ("okta_atspoke_sso", "okta_oin_submission_tester_app")
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    "Security Team\r\nBcc: x@evil",
    "invoice\u202egpj.exe",
    "A" * 10_240,
)
READ_SCOPES = ("okta.apps.read", "okta.users.read", "okta.logs.read", "okta.groups.read")
RISKY_SCOPES = ("okta.apps.manage", "okta.users.manage", "okta.roles.manage")
USER_SCOPE = "okta.users.read.self"  # a scope users consent to for themselves
OTHER_MODES = ("SAML_2_0", "AUTO_LOGIN", "BOOKMARK", "SECURE_PASSWORD_STORE", "WS_FEDERATION")
RETENTION = timedelta(days=90)
LOG_HISTORY = timedelta(days=120)  # older than retention: stored, never served
PLACEHOLDER_BASE = "https://org.okta.example"  # replaced by the served URL
ORG_ID = "00o1recertorg0000"
TOKEN_EVENTS = ("app.oauth2.token.grant.access_token", "app.oauth2.as.token.grant.access_token")
CREATE_EVENT = "application.lifecycle.create"


@dataclass
class Truth:
    """What a correct connector must report for the seeded org."""

    oauth_apps: dict[str, str] = field(default_factory=dict)  # app id -> client_id
    builtins: set[str] = field(default_factory=set)
    other_apps: set[str] = field(default_factory=set)  # SAML/SWA/...: not principals
    grants: dict[str, set[str]] = field(default_factory=dict)  # app id -> scope ids
    user_grants: dict[str, dict[str, str]] = field(default_factory=dict)  # app -> scope -> user
    secrets: dict[str, set[str]] = field(default_factory=dict)  # app id -> active secret ids
    app_keys: dict[str, set[str]] = field(default_factory=dict)  # app id -> active key ids
    api_tokens: dict[str, str] = field(default_factory=dict)  # token id -> user id
    deactivated_tokens: set[str] = field(default_factory=set)  # their user is DEPROVISIONED
    token_last_used: dict[str, datetime] = field(default_factory=dict)
    creators: dict[str, str] = field(default_factory=dict)  # app id -> user id
    departed: set[str] = field(default_factory=set)  # DEPROVISIONED user ids
    last_used: dict[str, datetime | None] = field(default_factory=dict)  # app id -> last use
    malformed_apps: int = 0
    hostile_apps: set[str] = field(default_factory=set)
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> name
    agent_owners: dict[str, set[str]] = field(default_factory=dict)  # agent -> person ids
    agent_group: dict[str, str] = field(default_factory=dict)  # agent -> owning group
    agent_permissions: dict[str, set[str]] = field(default_factory=dict)
    agent_keys: dict[str, set[str]] = field(default_factory=dict)  # agent -> active key ids
    orphan_agents: set[str] = field(default_factory=set)
    risky_agents: set[str] = field(default_factory=set)


@dataclass
class OrgData:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_members: dict[str, list[str]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    app_keys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    api_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    agent_owners: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    agent_keys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    agent_connections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    log: SystemLog = field(default_factory=SystemLog)
    truth: Truth = field(default_factory=Truth)


@dataclass(frozen=True)
class Volume:
    """System Log volume: sign-ins a day (never asked for, but scanned by every query),
    and how often each service app fetches a token (None: a few uses in 90 days)."""

    sso_per_day: int = 50
    token_every_hours: float | None = None


QUIET = Volume()


class _Generator:
    def __init__(self, seed: int, now: datetime, base_url: str) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.base_url = base_url
        self.org = OrgData()
        self._serial = 0
        self.log_rows: list[tuple[float, str, tuple[Any, ...]]] = []

    def okta_id(self, prefix: str) -> str:
        self._serial += 1
        tail = "".join(self.rng.choice("abcdefghijkLMNOPQRSTUVWXyz0123456789") for _ in range(9))
        return f"{prefix}{self._serial:05d}{tail}"

    def days_ago(self, low: float, high: float) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low, high))

    def link(self, path: str) -> dict[str, Any]:
        return {"href": f"{self.base_url}{path}"}

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
            "_links": {"self": self.link(f"/api/v1/users/{uid}")},
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

    def group(self, name: str, members: list[dict[str, Any]]) -> dict[str, Any]:
        gid = self.okta_id("00g")
        at = okta_time(self.days_ago(100, 900))
        group = {
            "id": gid,
            "created": at,
            "lastUpdated": at,
            "lastMembershipUpdated": at,
            "objectClass": ["okta:user_group"],
            "type": "OKTA_GROUP",
            "profile": {"name": name, "description": f"{name} (seeded)"},
            "_links": {"users": self.link(f"/api/v1/groups/{gid}/users")},
        }
        self.org.groups[gid] = group
        self.org.group_members[gid] = [member["id"] for member in members]
        return group

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
            "_links": {"self": self.link(f"/api/v1/apps/{app_id}")},
        }

    def oauth_app(self, label: str, service: bool, name: str = "oidc_client") -> dict[str, Any]:
        status = "ACTIVE" if self.rng.random() < 0.9 else "INACTIVE"
        app = self.app_shell(name, label, "OPENID_CONNECT", status)
        client_id = app["id"]
        methods = (
            ["private_key_jwt", "client_secret_basic"]
            if service
            else ["none", "client_secret_post"]
        )
        method = self.rng.choice(methods)
        app["credentials"]["oauthClient"] = {
            "autoKeyRotation": True,
            "client_id": client_id,
            "token_endpoint_auth_method": method,
        }
        settings: dict[str, Any] = {
            "grant_types": ["client_credentials"]
            if service
            else ["authorization_code", "refresh_token"],
            "response_types": ["token"] if service else ["code"],
            "application_type": "service" if service else "web",
            "issuer_mode": "ORG_URL",
        }
        if not service:
            settings["redirect_uris"] = ["https://app.example.com/callback"]
        app["settings"]["oauthClient"] = settings
        if method.startswith("client_secret"):
            self.secrets_for(app)
        elif method == "private_key_jwt":
            self.keys_for(app)
        return app

    def secrets_for(self, app: dict[str, Any]) -> None:
        """One live secret, sometimes a second (rotation under way), sometimes an old
        inactive one: Okta keeps at most two (provider-facts.md)."""
        app_id = app["id"]
        statuses = self.rng.choice([["ACTIVE"], ["ACTIVE", "ACTIVE"], ["INACTIVE", "ACTIVE"]])
        secrets: list[dict[str, Any]] = []
        for status in statuses:
            secret_id = self.okta_id("ocs")
            at = okta_time(self.days_ago(5, 800))
            secrets.append(
                {
                    "id": secret_id,
                    "status": status,
                    "client_secret": "DRUFXGF9XbLn......a3x3POBiIxDreBCdZuFs5B",
                    "secret_hash": f"{self.rng.getrandbits(96):024x}",
                    "created": at,
                    "lastUpdated": at,
                    "_links": {
                        "deactivate": {
                            **self.link(
                                f"/api/v1/apps/{app_id}/credentials/secrets/{secret_id}"
                                "/lifecycle/deactivate"
                            ),
                            "hints": {"allow": ["POST"]},
                        }
                    },
                }
            )
        self.org.secrets[app_id] = secrets
        self.org.truth.secrets[app_id] = {s["id"] for s in secrets if s["status"] == "ACTIVE"}

    def jwk(self, prefix: str, status: str) -> dict[str, Any]:
        key_id = self.okta_id(prefix)
        at = okta_time(self.days_ago(5, 600))
        return {
            "id": key_id,
            "kid": f"kid-{key_id[-8:]}",
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "e": "AQAB",
            "n": "mkC6yAJVvFwUlmM9gKjb2d-YK5qHFt-mXSsbjWKKs4EfNm-BoQeeovBZtSACyaqLc8IYFTPEURFc",
            "status": status,
            "created": at,
            "lastUpdated": at,
            "_links": {},
        }

    def keys_for(self, app: dict[str, Any]) -> None:
        keys = [self.jwk("pks", "ACTIVE")]
        if self.rng.random() < 0.3:
            keys.append(self.jwk("pks", "INACTIVE"))
        self.org.app_keys[app["id"]] = keys
        self.org.truth.app_keys[app["id"]] = {k["id"] for k in keys if k["status"] == "ACTIVE"}

    def grants_for(self, app: dict[str, Any], creator: str | None, service: bool) -> None:
        scopes = self.rng.sample(READ_SCOPES, self.rng.randint(0, 2))
        if self.rng.random() < 0.25:
            scopes.append(self.rng.choice(RISKY_SCOPES))
        grants: dict[str, dict[str, Any]] = {}
        admin = creator or next(iter(self.org.users))
        for scope in scopes:
            grant = self.grant(app, scope, admin)
            grants[grant["id"]] = grant
        if not service and self.rng.random() < 0.3:
            user = self.rng.choice([u for u in self.org.users.values() if u["status"] == "ACTIVE"])
            grant = self.grant(app, USER_SCOPE, user["id"], consenting=user["id"])
            grants[grant["id"]] = grant
            self.org.truth.user_grants[app["id"]] = {USER_SCOPE: user["id"]}
        self.org.grants[app["id"]] = grants
        self.org.truth.grants[app["id"]] = set(scopes)

    def grant(
        self, app: dict[str, Any], scope: str, admin: str, consenting: str | None = None
    ) -> dict[str, Any]:
        grant_id = self.okta_id("oag")
        at = okta_time(self.days_ago(0, 300))
        grant = {
            "id": grant_id,
            "status": "ACTIVE",
            "created": at,
            "createdBy": {"id": admin, "type": "User"},
            "lastUpdated": at,
            "issuer": self.base_url,
            "clientId": app["credentials"]["oauthClient"]["client_id"],
            "scopeId": scope,
            "source": "END_USER" if consenting else "ADMIN",
            "_links": {
                "app": self.link(f"/api/v1/apps/{app['id']}"),
                "self": self.link(f"/api/v1/apps/{app['id']}/grants/{grant_id}"),
            },
        }
        if consenting:
            grant["userId"] = consenting  # present for END_USER grants only (spec)
        return grant

    # -- API tokens -----------------------------------------------------------------------
    def api_token(self, owner: dict[str, Any]) -> None:
        token_id = self.okta_id("00T")
        created = self.days_ago(40, 700)
        window_text, window = self.rng.choice(
            [(None, timedelta(days=30)), ("P30D", timedelta(days=30)), ("P7D", timedelta(days=7))]
        )
        last_used = max(created, self.days_ago(0, 60))
        network: dict[str, Any] = {"connection": "ANYWHERE"}
        if self.rng.random() < 0.3:
            network = {"connection": "ZONE", "include": ["nzo1corpnet"], "exclude": []}
        self.org.api_tokens[token_id] = {
            "id": token_id,
            "name": f"{owner['profile']['firstName']}'s automation token",
            "userId": owner["id"],
            "clientName": "Okta API",
            "tokenWindow": window_text,  # null as recorded from real Okta: the 30-day default
            "network": network,
            "expiresAt": okta_time(last_used + window),
            "created": okta_time(created),
            "lastUpdated": okta_time(created),
            "_links": {"self": self.link(f"/api/v1/api-tokens/{token_id}")},
        }
        truth = self.org.truth
        truth.api_tokens[token_id] = owner["id"]
        truth.token_last_used[token_id] = last_used.replace(microsecond=0)
        if owner["status"] == "DEPROVISIONED":
            truth.deactivated_tokens.add(token_id)

    # -- AI agents ------------------------------------------------------------------------
    def agent(
        self,
        name: str,
        owners: list[dict[str, str]],
        connections: list[dict[str, Any]],
        linked_app: dict[str, Any] | None,
        status: str = "ACTIVE",
    ) -> str:
        agent_id = self.okta_id("wlp")
        at = okta_time(self.days_ago(2, 200))
        self.org.agents[agent_id] = {
            "id": agent_id,
            "created": at,
            "lastUpdated": at,
            "status": status,
            **({"appId": linked_app["id"]} if linked_app else {}),
            "profile": {"name": name, "description": f"{name}, registered in Okta"},
            "_links": {"self": self.link(f"/workload-principals/api/v1/ai-agents/{agent_id}")},
        }
        self.org.agent_owners[agent_id] = owners
        keys = [self.jwk("pks", "ACTIVE"), self.jwk("pks", "INACTIVE")]
        self.org.agent_keys[agent_id] = keys
        for connection in connections:
            connection["_links"] = {
                "self": self.link(
                    f"/workload-principals/api/v1/ai-agents/{agent_id}/connections/"
                    f"{connection['id']}"
                )
            }
        self.org.agent_connections[agent_id] = connections
        truth = self.org.truth
        truth.agents[agent_id] = name
        truth.agent_keys[agent_id] = {keys[0]["id"]}
        truth.agent_permissions[agent_id] = {
            permission
            for connection in connections
            if connection["status"] == "ACTIVE"
            for permission in _permissions(connection)
        }
        return agent_id

    def custom_as_connection(
        self, server: str, condition: str, scopes: list[str], status: str = "ACTIVE"
    ) -> dict[str, Any]:
        connection_id = self.okta_id("mcn")
        orn = f"orn:okta:idp:{ORG_ID}:authorization_servers:aus{connection_id[-9:]}"
        return {
            "id": connection_id,
            "orn": f"orn:okta:idp:{ORG_ID}:connections:{connection_id}",
            "connectionType": "IDENTITY_ASSERTION_CUSTOM_AS",
            "protocolType": "IDENTITY_ASSERTION",
            "status": status,
            "resourceIndicator": orn,
            "authorizationServer": {
                "orn": orn,
                "name": server,
                "issuerUrl": f"{self.base_url}/oauth2/aus{connection_id[-9:]}",
                "_links": {
                    "self": self.link(f"/api/v1/authorizationServers/aus{connection_id[-9:]}")
                },
            },
            "scopeCondition": condition,
            "scopes": scopes,
        }

    def vault_connection(self, secret: str, path: str) -> dict[str, Any]:
        connection_id = self.okta_id("mcn")
        orn = f"orn:okta:pam:{ORG_ID}:secrets:{connection_id[-9:]}"
        return {
            "id": connection_id,
            "orn": f"orn:okta:idp:{ORG_ID}:connections:{connection_id}",
            "connectionType": "STS_VAULT_SECRET",
            "protocolType": "STS",
            "status": "ACTIVE",
            "resourceIndicator": orn,
            "secret": {
                "orn": orn,
                "name": secret,
                "path": path,
                "_links": {"self": self.link(f"/api/v1/secrets/{connection_id}")},
            },
        }

    # -- System Log -----------------------------------------------------------------------
    def event_row(self, event_type: str, at: datetime, detail: tuple[Any, ...]) -> None:
        self.log_rows.append((at.timestamp(), event_type, detail))

    def creation_event(self, app: dict[str, Any], creator: dict[str, Any], at: datetime) -> None:
        profile = creator["profile"]
        detail = (creator["id"], profile["login"], profile["displayName"], app["id"], app["label"])
        self.event_row(CREATE_EVENT, at, detail)

    def use_events(self, app: dict[str, Any], service: bool, volume: Volume) -> datetime | None:
        """Token grants to the app's client: when it was really last used."""
        client_id = app["credentials"]["oauthClient"]["client_id"]
        if self.rng.random() < 0.3:
            uses: list[datetime] = []
        elif service and volume.token_every_hours:
            step = timedelta(hours=volume.token_every_hours)
            at = self.now - LOG_HISTORY + step * self.rng.random()
            uses = []
            while at < self.now:
                uses.append(at)
                at += step
        else:
            uses = sorted(self.days_ago(0, 89) for _ in range(self.rng.randint(1, 3)))
        event_type = self.rng.choice(TOKEN_EVENTS)
        users = [u for u in self.org.users.values() if u["status"] == "ACTIVE"]
        for at in uses:
            if service:
                self.event_row(event_type, at, (client_id, "client", client_id, client_id))
            else:
                user = self.rng.choice(users)
                detail = (client_id, "user", user["id"], user["profile"]["login"])
                self.event_row(event_type, at, detail)
        served = [at for at in uses if at >= self.now - RETENTION + timedelta(minutes=5)]
        return served[-1].replace(microsecond=0) if served else None

    def sign_ins(self, volume: Volume) -> None:
        """Thousands of people signing in: noise every query has to scan past."""
        days = LOG_HISTORY.days
        for day in range(days):
            base = self.now - timedelta(days=day + 1)
            for _ in range(volume.sso_per_day):
                self.event_row(SSO, base + timedelta(seconds=self.rng.uniform(0, 86_400)), ())


def _permissions(connection: dict[str, Any]) -> set[str]:
    """What a correct connector reports for a connection (connectors/okta/agents.py)."""
    if connection["connectionType"] == "STS_VAULT_SECRET":
        return {f"secret:{connection['secret']['name']}"}
    condition, scopes = connection.get("scopeCondition"), connection.get("scopes", [])
    if condition == "ALL_SCOPES":
        return {"*"}
    if condition == "EXCLUDE":
        return {"* except " + ", ".join(scopes)}
    return set(scopes)


def generate(
    seed: int,
    size: int,
    now: datetime,
    base_url: str,
    oauth_share: float = 0.45,
    *,
    api_tokens: int | None = None,
    agents: int = 4,
    volume: Volume = QUIET,
) -> OrgData:
    """An org of `size` apps (built-ins and three malformed records included)."""
    gen = _Generator(seed, now, base_url)
    org, truth = gen.org, gen.org.truth
    actives, departed = gen.people(max(10, size // 20))
    _builtins(gen)
    hostile = list(HOSTILE_NAMES)
    oidc_web: list[dict[str, Any]] = []
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
        if not service:
            oidc_web.append(app)
        creator = _pick_creator(gen, app, actives, departed)
        gen.grants_for(app, creator, service)
        truth.last_used[app["id"]] = gen.use_events(app, service, volume)
    _add_malformed(gen)
    owners = actives[: max(3, size // 50)] + departed[:1]
    for index in range(max(4, size // 50) if api_tokens is None else api_tokens):
        gen.api_token(owners[index % len(owners)])
    _agents(gen, agents, actives, departed, oidc_web)
    gen.sign_ins(volume)
    org.log.extend(gen.log_rows)
    return org


def _builtins(gen: _Generator) -> None:
    for name, label in BUILTIN_APPS.items():
        if name in BUILTINS_WITH_CLIENT:
            app = gen.oauth_app(label, service=False, name=name)
            app["status"] = "ACTIVE"
            gen.org.truth.secrets.pop(app["id"], None)  # Okta's own: never read
            gen.org.truth.app_keys.pop(app["id"], None)
        else:
            mode = "OPENID_CONNECT" if name != "okta_browser_plugin" else "BROWSER_PLUGIN"
            app = gen.app_shell(name, label, mode, "ACTIVE")
        gen.org.apps[app["id"]] = app
        gen.org.truth.builtins.add(app["id"])


def _agents(
    gen: _Generator,
    count: int,
    actives: list[dict[str, Any]],
    departed: list[dict[str, Any]],
    linkable: list[dict[str, Any]],
) -> None:
    """Owned, orphaned, group-owned and high-risk agents, then a mix of those."""
    if count <= 0:
        return
    truth = gen.org.truth
    suspended = next(u for u in gen.org.users.values() if u["status"] == "SUSPENDED")
    members = [*actives[-3:], suspended, departed[-1]]
    group = gen.group("AI Platform Owners", members)
    gen.group("Engineering", actives[:5])
    for index in range(count):
        role = index % 4
        owner = actives[(index * 7) % len(actives)]
        link = linkable[index % len(linkable)] if linkable and index % 2 == 0 else None
        if role == 3:
            connections = [
                gen.custom_as_connection("Okta Admin API", "INCLUDE_ONLY", ["okta.users.manage"]),
                gen.vault_connection("AWS access key", "/prod/aws-keys"),
            ]
        else:
            connections = [
                gen.custom_as_connection("CRM API", "INCLUDE_ONLY", ["crm.read", "crm.history"]),
                gen.custom_as_connection("Billing API", "ALL_SCOPES", ["*"], status="INACTIVE"),
            ]
        owner_refs: list[dict[str, str]] = []
        if role in (0, 3):
            owner_refs = [{"type": "USER", "id": owner["id"]}]
        elif role == 2:
            owner_refs = [{"type": "GROUP", "id": group["id"]}]
        name = ("Support", "Orphaned", "Platform", "Ops")[role] + f" agent {index}"
        agent_id = gen.agent(name, owner_refs, connections, link)
        if role in (0, 3):
            truth.agent_owners[agent_id] = {owner["id"]}
        elif role == 2:
            truth.agent_owners[agent_id] = {m["id"] for m in actives[-3:]}
            truth.agent_group[agent_id] = group["id"]
        else:
            truth.orphan_agents.add(agent_id)
        if role == 3:
            truth.risky_agents.add(agent_id)


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
    gen.org.truth.secrets.pop(no_id["id"], None)
    gen.org.truth.app_keys.pop(no_id["id"], None)
    del no_id["id"]
    wrong_label = gen.oauth_app("x", service=True)
    wrong_label["label"] = 12345
    bad_status = gen.oauth_app("Bad status", service=False)
    bad_status["status"] = "HALF_ALIVE"
    for index, app in enumerate((no_id, wrong_label, bad_status)):
        key = app.get("id") or f"0oaMALFORMED{index}"
        gen.org.apps[key] = app
        gen.org.truth.secrets.pop(key, None)  # skipped as malformed: never read
        gen.org.truth.app_keys.pop(key, None)
    gen.org.truth.malformed_apps = 3
