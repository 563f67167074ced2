"""The VTC paper's synthetic experiments (Sheng et al., "Fairness in Serving Large Language
Models", OSDI 2024, §5.2) as a regression suite: which scenario stands for which experiment of the
artifact, and one way to measure both sides.

Both sides are measured by the same two functions on the same per-request fields as the
artifact's plotting code (``fair_bench/plot/visualize.py`` of github.com/Ying1123/VTC-artifact):

* service: ``prompt + 2 · output`` tokens per request (``cost_func(..., "linear")``), spread
  evenly over the request's decode interval [first token, finish] (``get_service_over_time``),
  summed per client over the window ``[lo, hi)`` of the run clock; the share is the client's part
  of the total;
* response time: the mean first-token latency (``get_response_time_over_time`` plots the same
  quantity over time) of the client's requests that arrived in ``[lo, hi)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exfairs.records import RequestRecord


@dataclass(frozen=True, slots=True)
class Experiment:
    """One synthetic experiment: our scenario file, the artifact's suite name and figure, the
    window the table measures (seconds of the run clock) and whether the artifact ran FCFS."""

    scenario: str
    suite: str
    figure: str
    lo: float
    hi: float
    clients: tuple[str, ...]


SUITE: tuple[Experiment, ...] = (
    Experiment("vtc-overload", "overload", "Figure 3", 60.0, 360.0, ("client1", "client2")),
    Experiment("vtc-proportional", "proportional", "Figure 4", 60.0, 600.0,
               ("client1", "client2", "client3")),
    Experiment("vtc-on-off-less", "on_off_less", "Figure 5", 0.0, 540.0, ("client1", "client2")),
    Experiment("vtc-on-off-overload", "on_off_overload", "Figure 6", 0.0, 540.0,
               ("client1", "client2")),
    Experiment("vtc-short-long", "poisson_short_long", "Figure 7", 60.0, 600.0,
               ("client1", "client2")),
)


@dataclass(frozen=True, slots=True)
class Response:
    """The artifact's per-request fields (seconds; ``first_token_latency = -1`` when aborted)."""

    client: str
    req_time: float
    first_token_latency: float
    request_latency: float
    prompt_len: int
    output_len: int


def from_records(records: Iterable[RequestRecord]) -> list[Response]:
    """Our records as the artifact's responses (unfinished requests count as aborted)."""
    out = []
    for r in records:
        if r.first_token_s is None or r.finish_s is None:
            out.append(Response(r.client, r.arrival_s, -1.0, 0.0, r.prompt_tokens,
                                r.output_tokens))
            continue
        out.append(Response(r.client, r.arrival_s, r.first_token_s - r.arrival_s,
                            r.finish_s - r.arrival_s, r.prompt_tokens, r.output_tokens))
    return out


def service_shares(responses: Sequence[Response], clients: Sequence[str], lo: float,
                   hi: float) -> dict[str, float]:
    """Each client's share of the service delivered in ``[lo, hi)`` (see the module docstring)."""
    got = dict.fromkeys(clients, 0.0)
    for r in responses:
        if r.first_token_latency < 0 or r.client not in got:
            continue
        start = r.req_time + r.first_token_latency
        end = r.req_time + r.request_latency
        if end <= start:
            continue
        overlap = max(0.0, min(hi, end) - max(lo, start))
        got[r.client] += (r.prompt_len + 2 * r.output_len) * overlap / (end - start)
    total = sum(got.values())
    return {c: (v / total if total > 0 else float("nan")) for c, v in got.items()}


def response_times(responses: Sequence[Response], clients: Sequence[str], lo: float,
                   hi: float) -> dict[str, float]:
    """Each client's mean first-token latency over its requests that arrived in ``[lo, hi)``."""
    out: dict[str, float] = {}
    for c in clients:
        v = [r.first_token_latency for r in responses
             if r.client == c and lo <= r.req_time < hi and r.first_token_latency >= 0]
        out[c] = sum(v) / len(v) if v else float("nan")
    return out
