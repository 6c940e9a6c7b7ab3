"""Deterministic seed data for the Google emulator: a Workspace domain and Cloud projects.

Everything is generated from `random.Random(seed)` relative to `now`, so a seed always
describes the same tenant. The seed is also the ground truth tests assert against.

Editions: `enterprise` logs a token `activity` event for app use, `business` does not
(the token audit log's `activity` events exist only on some editions, e.g. Enterprise and
Cloud Identity Premium; /work/shared/notes/provider-facts.md, "Google"). Apps in use are
used for `use_days` days up to their last use, `uses_per_day` times a day, as the real log
records many API-access events per user and app per day
(developers.google.com/workspace/admin/reports/v1/appendix/activity/token, "activity").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DOMAIN = "example.com"
CUSTOMER_ID = "C01abcd2e"
RETENTION = timedelta(days=180)  # Reports API keeps token and admin activity this long
NEVER_EXPIRES = "9999-12-31T23:59:59Z"  # IAM's validBeforeTime for keys without expiry

RISKY_SCOPES = (
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/gmail.modify",
)
PLAIN_SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/drive.file",
    "https://www.googleapis.com/auth/spreadsheets.readonly",
)
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    "Security Team\r\nBcc: x@evil.example",
    "Invoice \u202egnp.exe",
    "A" * 10_000,
)
APP_WORDS = ("Sheet", "Mail", "Sync", "Notes", "Board", "Sign", "Chat", "Calendar", "Backup", "CRM")
APP_BRANDS = ("Acme", "Zen", "Flux", "Orbit", "Nimbus", "Quill", "Pixel", "Lumen", "Vector")
EDITIONS = ("enterprise", "business")
GOOGLE_OWNED_CLIENTS = {"77185425430.apps.googleusercontent.com": "Google Chrome"}
# Google's clients whose secrets are public and which scripts reuse to mint user tokens with
# any scope: reviewed like third-party apps (provider-facts.md, "Google").
REUSABLE_GOOGLE_CLIENTS = {
    "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com": (
        "Google Auth Library"
    ),
    "32555940559.apps.googleusercontent.com": "Google Cloud SDK",
    "407408718192.apps.googleusercontent.com": "OAuth 2.0 Playground",
    "947318989803-6bn6qk8qdgf4n4g3pfee6491hc0brc4i.apps.googleusercontent.com": "Colaboratory",
}
FOREIGN_MANAGERS = ("boss@partner.example.org", "founder@gmail.com")  # 403 and 400
DEPARTED_MANAGER = f"gone@{DOMAIN}"  # deleted: 404


@dataclass
class SeedToken:
    client_id: str
    display_text: str
    scopes: list[str]
    native_app: bool
    consented_at: datetime
    last_used_at: datetime | None
    use_days: int = 1  # days of use up to last_used_at
    uses_per_day: int = 1  # `activity` events per day of use


@dataclass
class SeedUser:
    id: str
    email: str
    full_name: str
    suspended: bool = False
    archived: bool = False
    is_admin: bool = False
    manager_email: str | None = None
    tokens: dict[str, SeedToken] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return not (self.suspended or self.archived)


@dataclass
class SeedDwdClient:
    client_id: str
    scopes: list[str]
    authorized_by: str  # admin email
    authorized_at: datetime
    removed_at: datetime | None = None


@dataclass
class SeedKey:
    key_id: str
    key_type: str  # USER_MANAGED | SYSTEM_MANAGED
    valid_after: str
    valid_before: str
    disabled: bool = False


@dataclass
class SeedServiceAccount:
    project: str
    unique_id: str
    email: str
    display_name: str
    disabled: bool = False
    keys: list[SeedKey] = field(default_factory=list)

    @property
    def default_account(self) -> bool:
        """Compute Engine / App Engine default accounts: Google creates them, they hold
        Editor, and they are user-managed (cloud.google.com/iam/docs/service-account-types)."""
        return self.email.endswith(
            ("@developer.gserviceaccount.com", "@appspot.gserviceaccount.com")
        )


@dataclass
class Seed:
    now: datetime
    edition: str
    users: list[SeedUser]
    dwd_clients: list[SeedDwdClient]
    service_accounts: list[SeedServiceAccount]
    projects: tuple[str, ...]
    admin_email: str


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Generator:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now

    def digits(self, count: int) -> str:
        return str(self.rng.randint(1, 9)) + "".join(
            str(self.rng.randint(0, 9)) for _ in range(count - 1)
        )

    def ago(self, low_days: float, high_days: float) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low_days, high_days))

    def users(self, count: int) -> list[SeedUser]:
        users = [
            SeedUser(id=self.digits(21), email=f"user{i:05d}@{DOMAIN}", full_name=f"User {i}")
            for i in range(count)
        ]
        users[0].email, users[0].full_name, users[0].is_admin = f"admin@{DOMAIN}", "Admin", True
        managers = users[1 : max(2, count // 10)]
        for index, user in enumerate(users[1:], start=1):
            roll = self.rng.random()
            user.suspended = roll < 0.05
            user.archived = 0.05 <= roll < 0.07
            if index >= len(managers) + 1:
                user.manager_email = self.rng.choice(managers).email
        # Managers the directory cannot answer for: another company's, a consumer account,
        # and one deleted from this domain.
        for user, manager in zip(users[-3:], (*FOREIGN_MANAGERS, DEPARTED_MANAGER), strict=False):
            if user is not users[0]:
                user.manager_email = manager
        return users

    def client_id(self) -> str:
        tail = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
        return f"{self.digits(12)}-{tail}.apps.googleusercontent.com"

    def app_name(self, index: int) -> str:
        if index < len(HOSTILE_NAMES):
            return HOSTILE_NAMES[index]
        return f"{self.rng.choice(APP_BRANDS)} {self.rng.choice(APP_WORDS)} {index}"

    def scopes(self) -> list[str]:
        chosen = self.rng.sample(PLAIN_SCOPES, self.rng.randint(1, 3))
        if self.rng.random() < 0.3:
            chosen.append(self.rng.choice(RISKY_SCOPES))
        return chosen

    def last_use(self) -> datetime | None:
        roll = self.rng.random()
        if roll < 0.5:
            return self.ago(0, 30)
        if roll < 0.75:
            return self.ago(95, 175)  # stale, still inside the Reports window
        return None

    def grant_tokens(self, users: list[SeedUser], app_count: int) -> None:
        apps = [(self.client_id(), self.app_name(i), self.scopes()) for i in range(app_count)]
        apps += [(cid, name, list(PLAIN_SCOPES[:3])) for cid, name in GOOGLE_OWNED_CLIENTS.items()]
        apps += [
            (cid, name, [PLAIN_SCOPES[1], RISKY_SCOPES[1]])
            for cid, name in REUSABLE_GOOGLE_CLIENTS.items()
        ]
        for client_id, name, scopes in apps:
            native = self.rng.random() < 0.2
            reach = max(1, int(len(users) * self.rng.choice((0.001, 0.005, 0.02, 0.1))))
            for user in self.rng.sample(users, min(reach, len(users))):
                consented = self.ago(1, 400)
                used = self.last_use()
                user.tokens[client_id] = SeedToken(
                    client_id=client_id,
                    display_text=name,
                    scopes=list(scopes),
                    native_app=native,
                    consented_at=consented,
                    last_used_at=used if used and used > consented else None,
                    use_days=self.rng.randint(1, 30),
                    uses_per_day=self.rng.randint(2, 12),
                )

    def dwd_clients(
        self, count: int, admins: list[SeedUser], accounts: list[SeedServiceAccount]
    ) -> list[SeedDwdClient]:
        """Every fifth was authorized before the audit window; every third is the OAuth
        client of one of the seeded service accounts (its `oauth2ClientId`)."""
        clients = []
        own = [a for a in accounts if not a.disabled]
        for index in range(count):
            authorized = self.ago(1, 170) if index % 5 else self.ago(200, 400)
            removed = self.ago(0, 1) if index % 7 == 3 else None
            joined = own[index // 3 % len(own)] if own and index % 3 == 1 else None
            clients.append(
                SeedDwdClient(
                    client_id=joined.unique_id if joined else self.digits(21),
                    scopes=self.rng.sample(RISKY_SCOPES + PLAIN_SCOPES[1:], 2),
                    authorized_by=self.rng.choice(admins).email,
                    authorized_at=authorized,
                    removed_at=removed,
                )
            )
        return clients

    def key(self, managed: bool) -> SeedKey:
        created = self.ago(1, 900)
        disabled = not managed and self.rng.random() < 0.2
        kind = self.rng.random()
        if kind < 0.4:
            before = NEVER_EXPIRES
        elif kind < 0.7:
            before = rfc3339(created + timedelta(days=3650))  # long-lived
        else:
            before = rfc3339(created + timedelta(days=self.rng.choice((30, 90))))
        return SeedKey(
            key_id=f"{self.rng.getrandbits(160):040x}",
            key_type="SYSTEM_MANAGED" if managed else "USER_MANAGED",
            valid_after=rfc3339(created),
            valid_before=before,
            disabled=disabled,
        )

    def service_accounts(self, count: int, projects: tuple[str, ...]) -> list[SeedServiceAccount]:
        accounts = []
        for index in range(count):
            project = projects[index % len(projects)]
            name = HOSTILE_NAMES[1] if index == 2 else f"Pipeline {index}"
            email = f"svc-{index}@{project}.iam.gserviceaccount.com"
            if index < len(projects):
                email = f"{self.digits(12)}-compute@developer.gserviceaccount.com"
                name = "Compute Engine default service account"
            elif index < 2 * len(projects):
                email = f"{project}@appspot.gserviceaccount.com"
                name = "App Engine default service account"
            account = SeedServiceAccount(
                project=project,
                unique_id=self.digits(21),
                email=email,
                display_name=name,
                disabled=self.rng.random() < 0.1 or index == count - 1,
            )
            account.keys = [self.key(False) for _ in range(self.rng.randint(0, 3))]
            account.keys.append(self.key(True))
            accounts.append(account)
        return accounts


def generate(
    seed: int,
    size: int,
    users: int,
    projects: tuple[str, ...],
    now: datetime,
    dwd_share: float = 0.1,
    service_account_share: float = 0.3,
    edition: str = "enterprise",
) -> Seed:
    """`size` principals split into third-party apps, DWD clients and service accounts."""
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}")
    gen = _Generator(seed, now)
    people = gen.users(max(users, 5))
    dwd_count = max(1, round(size * dwd_share))
    sa_count = max(2 * len(projects), round(size * service_account_share))
    app_count = max(1, size - dwd_count - sa_count)
    gen.grant_tokens(people, app_count)
    admins = [people[0], *gen.rng.sample(people[1:], min(3, len(people) - 1))]
    for admin in admins:
        admin.is_admin = True
    accounts = gen.service_accounts(sa_count, projects)
    return Seed(
        now=now,
        edition=edition,
        users=people,
        dwd_clients=gen.dwd_clients(dwd_count, admins, accounts),
        service_accounts=accounts,
        projects=projects,
        admin_email=people[0].email,
    )
