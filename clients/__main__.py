import sys

from servelab.clients.cli import main

sys.exit(main())
