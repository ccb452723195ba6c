"""``python -m circuitlab``: the same as the ``circuitlab`` console script."""

import sys

from circuitlab.cli.main import main

sys.exit(main())
