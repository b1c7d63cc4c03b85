"""Repository-wide pytest configuration.

Notebooks under ``notebooks/`` are executed by the nbmake plugin in a Jupyter kernel that inherits
this process's environment; ``NNJAX_SMOKE=1`` makes them use tiny settings (a few seconds on CPU).
Set ``NNJAX_SMOKE=0`` explicitly to execute them with their full settings.
"""

import os

os.environ.setdefault("NNJAX_SMOKE", "1")
