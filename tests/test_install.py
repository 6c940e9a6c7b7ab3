"""Every install (README, CI, Docker) takes its versions from one constraints file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DPOP_SINCE = Version("3.4")  # okta SDK 3.4 signs requests with DPoP; older ones cannot


def pins() -> dict[str, Version]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            found[canonicalize_name(name)] = Version(version.strip())
    return found


def test_every_direct_dependency_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(r) for r in project["dependencies"]]
    direct += [Requirement(r) for r in project["optional-dependencies"]["test"]]
    pinned = pins()
    regenerate = "run .ci/lock to regenerate constraints.txt"
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in constraints.txt: {regenerate}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{requirement.name}=={pinned[name]} is outside {requirement.specifier}: {regenerate}"
        )
    assert pinned["okta"] >= DPOP_SINCE, "an okta SDK without DPoP"


def test_readme_ci_and_docker_install_from_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, "the demo and the test command"
    assert all("pip install -q -c constraints.txt " in command for command in commands)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1], ".ci/run runs the README's test command verbatim"
    assert "pip install --no-cache-dir -c constraints.txt ." in (ROOT / "Dockerfile").read_text()
