"""LCF: least counter first — VTC without the counter lift (docs/policies.md, "Peers").

The baseline "LCF" of Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024, §5):
the same virtual token counters and charges as `exfairs.policies.vtc.VTC`
(``c_i += w_p·prompt/w_i`` at the first dispatch, ``c_i += w_q·decode/w_i`` as output tokens are
served; in priority mode the requested output is charged at submission too), and the backlogged
client with the smallest counter goes first, but a client that returns from idle keeps its old
counter. A client idle for a while has banked credit and, on return, is served exclusively until
its counter catches up: the unfairness the lift exists to prevent (the paper's Fig. 6).

Parameters: ``w_p`` (default 1) and ``w_q`` (default 2), finite and ≥ 0, as VTC.
"""

from __future__ import annotations

import math

from exfairs.policies.registry import register_policy
from exfairs.policies.vtc import VTC


@register_policy("LCF")
class LCF(VTC):
    """VTC's counters, never lifted."""

    def _lift_reference(self) -> float:
        # max(c_i, -inf) = c_i: the arriving client keeps whatever counter it had.
        return -math.inf
