"""`python -m servelab.controller` is the `servelab` command."""

from servelab.controller.cli import main

raise SystemExit(main())
