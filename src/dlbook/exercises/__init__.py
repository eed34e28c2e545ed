"""Section-specific exercise checks, one module per section (``dlbook.exercises.neuron``...).

Each check is built on :mod:`dlbook.check`: it prints a pass, a hint, or "not answered yet",
and returns a truthy :class:`dlbook.check.Result` when the answer is right.
"""
