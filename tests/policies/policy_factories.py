"""Test factories for policies: requests with keyword defaults, policies with registered clients,
and a small driver that applies hook sequences the way the engines do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exfairs.policies import Policy, PolicyQueue, make_policy
from exfairs.records import SLO, Request


def req(
    rid: int,
    client: str = "a",
    arrival_s: float = 0.0,
    *,
    prompt: int = 10,
    output: int = 10,
    e2e_s: float | None = None,
    ttft_s: float | None = None,
    unloaded_e2e_s: float = 0.0,
) -> Request:
    """A request with small defaults."""
    return Request(
        request_id=rid,
        client=client,
        arrival_s=arrival_s,
        prompt_tokens=prompt,
        output_tokens=output,
        slo=SLO(e2e_s=e2e_s, ttft_s=ttft_s),
        unloaded_e2e_s=unloaded_e2e_s,
    )


def policy(
    name: str,
    clients: Sequence[str] = ("a", "b"),
    weights: Sequence[float] | None = None,
    **params: Any,
) -> Policy:
    """A registered policy with `clients` added in order (weights default to 1)."""
    p = make_policy(name, params)
    for i, c in enumerate(clients):
        p.add_client(c, 1.0 if weights is None else weights[i])
    return p


def arrive(q: PolicyQueue, request: Request, now_s: float | None = None) -> None:
    """What a gate does on arrival: tell the policy, then queue the request."""
    t = request.arrival_s if now_s is None else now_s
    q.policy.on_arrival(request, t)
    q.push(request, t)


def pop_clients(q: PolicyQueue, now_s: float, n: int | None = None) -> list[str]:
    """Clients of the next `n` pops (all queued requests when `n` is None)."""
    out: list[str] = []
    while len(q) and (n is None or len(out) < n):
        r = q.pop(now_s)
        assert r is not None
        out.append(r.client)
    return out
