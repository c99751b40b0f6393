"""`python -m servelab.refserver` is `servelab-refserver`."""

import sys

from servelab.refserver.cli import main

sys.exit(main())
