"""``python -m metamap …`` is the ``metamap`` command (``torchrun … -m metamap train CONFIG``)."""

import sys

from metamap.cli import main

sys.exit(main())
