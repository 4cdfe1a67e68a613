"""World Models (Ha & Schmidhuber, 2018) in PyTorch.

V (``worldmodels.vae``) compresses frames to z, M (``worldmodels.mdnrnn``) predicts the next z,
reward and done, C (``worldmodels.controller``) acts on [z, h]; ``worldmodels.dream`` runs M as an
environment and ``worldmodels.es`` trains C with CMA-ES. Environments live in
``worldmodels.envs``, acting policies in ``worldmodels.agents``.
"""

__version__ = "0.1.0"

# gymnasium's convention (as with ale_py): importing the package registers its envs, so
# `import worldmodels; gym.make("worldmodels/CarRacingFast-v3")` and
# `gym.register_envs(worldmodels)` work.
from . import envs as envs  # noqa: E402
