"""The charts' common ground: where a run keeps them, how a PNG is written.

The report's charts (controller/report.py) and the trend charts (controller/trend.py)
are both written here, so that the same figure always gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHARTS_DIR = "charts"


@dataclass(frozen=True)
class Chart:
    path: Path  # charts/<name>.png inside the run directory
    title: str

    @property
    def relative_path(self) -> str:
        return f"{CHARTS_DIR}/{self.path.name}"

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


def chart_slug(text: str) -> str:
    """A name made safe for a chart's file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def write_bytes(path: Path, data: bytes) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_chart(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as a PNG whose bytes depend on the figure alone."""
    figure.tight_layout()
    buffer = io.BytesIO()
    # No Software/date metadata: the same results give the same bytes.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    write_bytes(path, buffer.getvalue())
