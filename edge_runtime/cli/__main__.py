"""``python -m edge_runtime.cli``: the ``edgecls`` command (how tests and devices without the script run it)."""

import sys

from edge_runtime.cli.main import main

sys.exit(main())
