"""The ``worldmodels`` subcommands, one module each (``add_arguments(parser)`` and
``run(args)``), in the order a run uses them: collect -> train_vae -> encode -> train_rnn ->
train_controller (C with CMA-ES, ``worldmodels.es``, in ``worldmodels.dream`` or the real env)
-> iterate (the dream protocol's rounds) -> evaluate; play, dream, figures and bench to watch
and measure; pipeline runs them all. The method itself (V, M, C, the dream, the ES) lives one
level up, in ``worldmodels``.
"""
