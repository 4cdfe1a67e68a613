"""Policies that act in an environment: the data-collection policies (``random_policies``)
and, later, the World Models agent.

Installed as ``worldmodels.agents``; import it so, never as a top-level ``agents``.
"""

from .random_policies import POLICIES, BrownianPolicy, Policy, RandomPolicy, make_policy

__all__ = ["POLICIES", "BrownianPolicy", "Policy", "RandomPolicy", "make_policy"]
