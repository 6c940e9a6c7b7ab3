"""Okta for AI Agents in the emulator: `/workload-principals/api/v1/ai-agents` with its keys,
connections, lifecycle and asynchronous operations.

Paths and shapes are those the SDK's api.yaml keeps from the published definitions
(../shared/specs/okta/okta-sdk-python-3.4.4.api.yaml: AIAgent, ListAIAgentsResponse,
AgentJsonSigningKeyResponse, ManagedConnectionList, AIAgentOperationResponse; `limit` 1-200,
default 20, `after` from the Link header).

Owners are published nowhere: the emulator serves them the ways public clients meet them,
chosen by `agent_owners`: "embedded" in the agent object, "endpoint" under `/owners`, or
"refused" (405 to every method, as one lab saw: provider-facts.md).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.okta.errors import not_found, validation
from sandbox.okta.seed import ORG_ID
from sandbox.okta.syslog import okta_time
from sandbox.server import Request, Response

if TYPE_CHECKING:
    from sandbox.okta.app import OktaEmulator

BASE = "/workload-principals/api/v1"


def register(emulator: OktaEmulator) -> None:
    api = _AgentsApi(emulator)
    emulator.route("GET", f"{BASE}/ai-agents")(api.list_agents)
    emulator.route("GET", f"{BASE}/ai-agents/{{agent_id}}")(api.get_agent)
    emulator.route("POST", f"{BASE}/ai-agents/{{agent_id}}/lifecycle/{{action}}")(api.lifecycle)
    emulator.route("GET", f"{BASE}/ai-agents/{{agent_id}}/credentials/jwks")(api.list_keys)
    emulator.route("GET", f"{BASE}/ai-agents/{{agent_id}}/connections")(api.list_connections)
    emulator.route("GET", f"{BASE}/ai-agents/{{agent_id}}/owners")(api.list_owners)
    emulator.route("GET", f"{BASE}/operations/{{operation_id}}")(api.get_operation)


class _AgentsApi:
    def __init__(self, emulator: OktaEmulator) -> None:
        self.emulator = emulator
        self.org = emulator.org

    def _agent(self, request: Request) -> dict[str, Any] | None:
        return self.org.agents.get(request.params["agent_id"])

    def _render(self, agent: dict[str, Any]) -> dict[str, Any]:
        if self.emulator.agent_owners != "embedded":
            return dict(agent)
        owners = [
            {**owner, "orn": _orn(owner)} for owner in self.org.agent_owners.get(agent["id"], [])
        ]
        return {**agent, "owners": owners}

    def list_agents(self, request: Request) -> Response:
        agents = [(agent_id, self._render(a)) for agent_id, a in self.org.agents.items()]
        return self.emulator.page(request, agents, max_limit=200, default_limit=20, envelope=True)

    def get_agent(self, request: Request) -> Response:
        agent = self._agent(request)
        if agent is None:
            return not_found(request.params["agent_id"], "AIAgent")
        return Response(200, self._render(agent))

    def lifecycle(self, request: Request) -> Response:
        """Only an ACTIVE agent can be deactivated; activating needs owners and an active
        key (help.okta.com "Okta for AI Agents status types"). The change is an operation
        (types ai-agent:Activate / ai-agent:Deactivate): 202, polled at its Location."""
        agent = self._agent(request)
        action = request.params["action"]
        if agent is None:
            return not_found(request.params["agent_id"], "AIAgent")
        if action not in ("activate", "deactivate"):
            return self.emulator.not_found(request)
        if action == "deactivate" and agent["status"] != "ACTIVE":
            return validation("status", "Only an ACTIVE AI agent can be deactivated.")
        if action == "activate" and not self.org.agent_owners.get(agent["id"]):
            return validation("owners", "An AI agent needs an owner before it is activated.")
        agent["status"] = "ACTIVE" if action == "activate" else "INACTIVE"
        now = okta_time(datetime.fromtimestamp(self.emulator.clock(), UTC))
        agent["lastUpdated"] = now
        operation_id = "aop" + secrets.token_hex(8)
        operation = {
            "id": operation_id,
            "type": f"ai-agent:{action.capitalize()}",
            "status": "IN_PROGRESS",
            "created": now,
            "started": now,
        }
        self.emulator.operations[operation_id] = {
            **operation,
            "status": "COMPLETED",
            "completed": now,
            "resource": {
                "id": agent["id"],
                "type": "AI_AGENT",
                "status": agent["status"],
                "_links": {
                    "self": {"href": f"{self.emulator.base_url}{BASE}/ai-agents/{agent['id']}"}
                },
            },
        }
        location = f"{self.emulator.base_url}{BASE}/operations/{operation_id}"
        return Response(202, operation, {"Location": location})

    def get_operation(self, request: Request) -> Response:
        operation = self.emulator.operations.get(request.params["operation_id"])
        if operation is None:
            return not_found(request.params["operation_id"], "AIAgentOperation")
        return Response(200, operation)

    def list_keys(self, request: Request) -> Response:
        """`{"data": [...], "_links": {"self"}}`, no paging (agentJsonWebKeyListResponse)."""
        agent = self._agent(request)
        if agent is None:
            return not_found(request.params["agent_id"], "AIAgent")
        href = f"{self.emulator.base_url}{request.path}"
        keys = self.org.agent_keys.get(agent["id"], [])
        return Response(200, {"data": list(keys), "_links": {"self": {"href": href}}})

    def list_connections(self, request: Request) -> Response:
        agent = self._agent(request)
        if agent is None:
            return not_found(request.params["agent_id"], "AIAgent")
        connections = [(c["id"], c) for c in self.org.agent_connections.get(agent["id"], [])]
        return self.emulator.page(
            request, connections, max_limit=200, default_limit=20, envelope=True
        )

    def list_owners(self, request: Request) -> Response:
        if self.emulator.agent_owners != "endpoint":
            return self.emulator.not_allowed(request)
        agent = self._agent(request)
        if agent is None:
            return not_found(request.params["agent_id"], "AIAgent")
        owners = [
            (owner["id"], {**owner, "orn": _orn(owner)})
            for owner in self.org.agent_owners.get(agent["id"], [])
        ]
        return self.emulator.page(request, owners, max_limit=200, default_limit=20, envelope=True)


def _orn(owner: dict[str, str]) -> str:
    kind = "users" if owner["type"] == "USER" else "groups"
    return f"orn:okta:directory:{ORG_ID}:{kind}:{owner['id']}"
