"""dlbook: the small shared package behind *From Neurons to Large Models*.

Every section of the book imports it for the few things that must be the same everywhere:
picking a device, seeding, showing source code, progress bars, plotting defaults and exercise
checks.
Topic modules (``dlbook.neuron``, ``dlbook.data``, ...) are imported by the sections that use
them.
"""

from dlbook import check, plot
from dlbook.utils import device, progress, seed_everything, show_source

__all__ = ["check", "device", "plot", "progress", "seed_everything", "show_source"]
__version__ = "0.1.0"
