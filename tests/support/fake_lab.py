"""A stand-in for `ansible-playbook lab.yml` under `servelab nightly --lab-command`.

    python fake_lab.py --mark A --marks FILE [--wait-for FILE] [--copy RUN_DIR] [--exit N]

Appends its mark to FILE (so a test sees which nightly runs got to run it), waits
for a file to appear if asked (holding the nightly lock meanwhile), copies a
prepared run directory into $SERVELAB_NIGHTLY_RESULTS, and exits with N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--mark", required=True)
parser.add_argument("--marks", type=Path, required=True)
parser.add_argument("--wait-for", type=Path)
parser.add_argument("--copy", type=Path)
parser.add_argument("--exit", type=int, default=0)
args = parser.parse_args()

with args.marks.open("a") as marks:
    marks.write(args.mark + "\n")
print(f"fake lab {args.mark}: plan {os.environ['SERVELAB_NIGHTLY_PLAN']}", flush=True)
if args.wait_for is not None:
    deadline = time.monotonic() + 60
    while not args.wait_for.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
if args.copy is not None:
    results = Path(os.environ["SERVELAB_NIGHTLY_RESULTS"])
    shutil.copytree(args.copy, results / args.copy.name)
    print(f"fake lab {args.mark}: wrote {results / args.copy.name}", flush=True)
raise SystemExit(args.exit)
