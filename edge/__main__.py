"""``python -m edge`` is ``matedge`` (also for ``torchrun -m edge train ...``)."""
import sys

from edge.cli import main

sys.exit(main())
