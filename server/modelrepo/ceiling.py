"""The in-process ceiling: OpenVINO's own throughput per (model, batch), no server in between.

Measured with OpenVINO's `benchmark_app` (the server's performance hint, static batch
shape); if that tool is missing or fails, with an AsyncInferQueue in this process, and
the record says which. Throughput is in frames per second (inferences x batch).

Given the server's CPU set, the measurement runs on exactly those CPUs (every thread of
this process and benchmark_app inherit it), so that OpenVINO picks the streams and
threads the server gets there; the record keeps the set.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab.controller.cpusets import CpusetError, format_cpuset, parse_cpuset
from servelab.server.modelrepo.errors import ModelRepoError, ModelRepoInputError
from servelab.server.modelrepo.manifest import load_manifest

CEILING_FILE = "ceiling.json"
CEILING_FORMAT = 1
METHOD_BENCHMARK_APP = "benchmark_app"
METHOD_ASYNC_QUEUE = "async_infer_queue"

Log = Callable[[str], None]


@dataclass(frozen=True)
class CeilingRecord:
    """One measurement of one model at one batch size."""

    model: str
    batch: int
    throughput_fps: float  # frames (samples) per second = inferences x batch / duration
    inferences_per_s: float
    latency_median_ms: float
    latency_mean_ms: float
    latency_min_ms: float
    latency_max_ms: float
    iterations: int
    duration_s: float  # measured
    requested_duration_s: int
    nstreams: int | None
    nireq: int | None
    performance_hint: str
    inference_precision: str
    method: str  # "benchmark_app" or "async_infer_queue"
    method_note: str  # why the fallback was used, or ""
    openvino_version: str
    cpu_model: str
    cpu_logical_cores: int
    cpu_physical_cores: int | None
    spec_hash: str  # the model build this was measured on
    measured_at: str  # ISO 8601, UTC
    cpus: str = ""  # the CPU set it ran on (the server's); "": every CPU, records before sets

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CeilingRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class CeilingReport:
    records: list[CeilingRecord] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        measured = [f"{r.model}@{r.batch}" for r in self.records]
        return {
            "changed": bool(self.records),
            "measured": measured,
            "skipped": [f"{m}@{b}" for m, b in self.skipped],
            "records": [asdict(r) for r in self.records],
        }


def load_ceiling(repo: Path | str) -> dict[tuple[str, int], CeilingRecord]:
    """Every record of REPO/ceiling.json keyed by (model, batch); empty if none yet."""
    path = Path(repo) / CEILING_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelRepoInputError(
            f"{path} is not a readable ceiling file ({exc}); remove it to measure again"
        ) from exc
    records = {}
    if raw.get("format") != CEILING_FORMAT:
        return {}
    for model, by_batch in raw.get("models", {}).items():
        for batch, data in by_batch.items():
            records[(model, int(batch))] = CeilingRecord.from_json(data)
    return records


def _save_ceiling(repo: Path, records: dict[tuple[str, int], CeilingRecord]) -> None:
    models: dict[str, dict[str, Any]] = {}
    for (model, batch), record in sorted(records.items()):
        models.setdefault(model, {})[str(batch)] = asdict(record)
    text = json.dumps({"format": CEILING_FORMAT, "models": models}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".ceiling.", suffix=".json", dir=repo)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, repo / CEILING_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _quiet(_: str) -> None:
    pass


def measure_ceiling(
    repo: Path | str,
    models: Sequence[str],
    batches: Sequence[int],
    *,
    duration_s: int = 10,
    missing_only: bool = False,
    method: str = "auto",
    cpus: str = "",
    performance_hint: str = "THROUGHPUT",
    streams: int = 0,
    log: Log = _quiet,
) -> CeilingReport:
    """Measure every (model, batch) and merge the records into REPO/ceiling.json.

    With `missing_only`, pairs that already have a record for the model's current
    build (same spec hash) on the same CPU set are skipped. `method` is "auto"
    (benchmark_app, else the in-process queue), "benchmark_app" or "async_infer_queue".
    `cpus` (a cpuset, the server's) pins the measurement; `performance_hint` and
    `streams` (NUM_STREAMS, 0: the hint chooses) are the server's.
    """
    root = Path(repo)
    if performance_hint not in PERFORMANCE_HINTS:
        raise ModelRepoInputError(
            f"unknown performance hint {performance_hint!r}; use {', '.join(PERFORMANCE_HINTS)}"
        )
    if streams < 0:
        raise ModelRepoInputError(f"streams {streams} is negative; 0 lets the hint choose")
    cpus = _pin(cpus)
    if method not in ("auto", METHOD_BENCHMARK_APP, METHOD_ASYNC_QUEUE):
        raise ModelRepoInputError(
            f"unknown method {method!r}; use auto, {METHOD_BENCHMARK_APP} or {METHOD_ASYNC_QUEUE}"
        )
    if duration_s < 1:
        raise ModelRepoInputError(f"duration {duration_s} s is too short; give at least 1 s")
    if not batches or any(b < 1 for b in batches):
        raise ModelRepoInputError(f"batch sizes must be >= 1, got {list(batches)}")
    manifest = load_manifest(root)
    targets = []
    for model in models:
        entry = manifest.models.get(model)
        if entry is None or entry.ir is None:
            have = ", ".join(n for n, e in sorted(manifest.models.items()) if e.ir) or "none"
            raise ModelRepoInputError(
                f"model {model!r} has no OpenVINO IR in {root} (models with one: {have}); "
                f"build it first: servelab models build --repo {root} --models {model}"
            )
        targets.append((model, root / entry.ir, entry.spec_hash, entry.spec))
    records = load_ceiling(root)
    report = CeilingReport()
    for model, xml, digest, spec in targets:
        for batch in dict.fromkeys(batches):
            current = records.get((model, batch))
            if (
                missing_only
                and current is not None
                and current.spec_hash == digest
                and current.cpus == cpus
            ):
                report.skipped.append((model, batch))
                continue
            where = f" on CPUs {cpus}" if cpus else ""
            log(f"{model}: measuring batch {batch} for {duration_s} s{where}")
            shape = _static_shape(spec, batch, xml)
            tuning = Tuning(performance_hint, streams)
            record = _measure(model, xml, batch, shape, duration_s, digest, method, tuning)
            record = replace(record, cpus=cpus)
            records[(model, batch)] = record
            _save_ceiling(root, records)
            report.records.append(record)
    return report


PERFORMANCE_HINTS = ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT")


@dataclass(frozen=True)
class Tuning:
    """The server's OpenVINO settings the ceiling is measured with."""

    performance_hint: str = "THROUGHPUT"
    streams: int = 0  # NUM_STREAMS; 0: the hint chooses

    def properties(self) -> dict[str, Any]:
        chosen: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint}
        if self.streams > 0:
            chosen["NUM_STREAMS"] = self.streams
        return chosen


def _pin(cpus: str) -> str:
    """Move every thread of this process onto `cpus` (threads and programs started later
    inherit it) and return the set as the kernel gives it back; "" leaves it alone."""
    if not cpus:
        return ""
    try:
        wanted = parse_cpuset(cpus)
    except CpusetError as exc:
        raise ModelRepoInputError(f"--cpus: {exc}") from None
    try:
        for thread in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(thread), wanted)
    except OSError as exc:
        raise ModelRepoInputError(f"cannot run on CPUs {cpus}: {exc}") from None
    return format_cpuset(os.sched_getaffinity(0))


def _static_shape(spec: dict[str, Any], batch: int, xml: Path) -> tuple[str, list[int]]:
    signature = spec.get("input")
    if not isinstance(signature, dict):
        raise ModelRepoInputError(f"the manifest has no input signature for {xml}")
    dims = [int(d) for d in signature["shape"]]
    if any(d < 0 for d in dims[1:]):
        raise ModelRepoInputError(
            f"{xml}: input {signature['name']} has dynamic dimensions {dims} besides the batch"
        )
    return str(signature["name"]), [batch, *dims[1:]]


def _measure(
    model: str,
    xml: Path,
    batch: int,
    shape: tuple[str, list[int]],
    duration_s: int,
    digest: str,
    method: str,
    tuning: Tuning,
) -> CeilingRecord:
    note = ""
    if method in ("auto", METHOD_BENCHMARK_APP):
        tool = _benchmark_app()
        if tool is not None:
            try:
                return _with_benchmark_app(
                    tool, model, xml, batch, shape, duration_s, digest, tuning
                )
            except ModelRepoError as exc:
                if method == METHOD_BENCHMARK_APP:
                    raise
                note = f"benchmark_app failed: {exc}"
        elif method == METHOD_BENCHMARK_APP:
            raise ModelRepoInputError(
                "benchmark_app is not installed beside this Python; it ships with the "
                "openvino wheel (or use --method async_infer_queue)"
            )
        else:
            note = "benchmark_app not found beside this Python or on PATH"
    record = _with_async_queue(model, xml, batch, shape, duration_s, digest, tuning)
    return _replace_note(record, note)


def _replace_note(record: CeilingRecord, note: str) -> CeilingRecord:
    data = asdict(record)
    data["method_note"] = note
    return CeilingRecord(**data)


def _benchmark_app() -> Path | None:
    beside = Path(sys.executable).parent / "benchmark_app"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("benchmark_app")
    return Path(found) if found else None


def _with_benchmark_app(
    tool: Path,
    model: str,
    xml: Path,
    batch: int,
    shape: tuple[str, list[int]],
    duration_s: int,
    digest: str,
    tuning: Tuning,
) -> CeilingRecord:
    name, dims = shape
    streams = ["-nstreams", str(tuning.streams)] if tuning.streams > 0 else []
    with tempfile.TemporaryDirectory(prefix="servelab-ceiling-") as report_dir:
        command = [
            str(tool),
            "-m",
            str(xml),
            "-d",
            "CPU",
            "-hint",
            tuning.performance_hint.lower(),
            *streams,
            "-shape",
            f"{name}[{','.join(map(str, dims))}]",
            "-t",
            str(duration_s),
            "-report_type",
            "no_counters",
            "-report_folder",
            report_dir,
            "-json_stats",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=duration_s + 600, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelRepoError(f"benchmark_app on {xml} did not finish in time") from exc
        stats_path = Path(report_dir) / "benchmark_report.json"
        if result.returncode != 0 or not stats_path.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelRepoError(
                f"benchmark_app exited with {result.returncode} on {xml}: {tail[0]}"
            )
        stats = json.loads(stats_path.read_text())
    setup = stats["configuration_setup"]
    results = stats["execution_results"]
    iterations = int(results["total number of iterations"])
    duration = float(results["total execution time (ms)"]) / 1000.0
    reported_batch = int(setup.get("batch size", batch))
    if reported_batch != batch:
        raise ModelRepoError(f"benchmark_app ran batch {reported_batch}, asked for {batch}")
    # benchmark_app's "throughput" is already in frames/s (iterations x batch / duration);
    # recompute it from the counts so that the unit is ours, not a parse of its wording.
    fps = iterations * batch / duration if duration > 0 else 0.0
    config = _printed_config(result.stdout)
    return CeilingRecord(
        model=model,
        batch=batch,
        throughput_fps=round(fps, 3),
        inferences_per_s=round(iterations / duration, 3) if duration > 0 else 0.0,
        latency_median_ms=float(results["latency (ms)"]),
        latency_mean_ms=float(results["avg latency"]),
        latency_min_ms=float(results["min latency"]),
        latency_max_ms=float(results["max latency"]),
        iterations=iterations,
        duration_s=round(duration, 3),
        requested_duration_s=duration_s,
        nstreams=_int_or_none(config.get("NUM_STREAMS")),
        nireq=_int_or_none(setup.get("number of parallel infer requests")),
        performance_hint=config.get("PERFORMANCE_HINT", tuning.performance_hint),
        inference_precision=_precision_name(config.get("INFERENCE_PRECISION_HINT", "")),
        method=METHOD_BENCHMARK_APP,
        method_note="",
        **_provenance(),
        spec_hash=digest,
    )


_CONFIG_LINE = re.compile(r"^\[ INFO \]\s{3}([A-Z_]+): (.*)$")


def _printed_config(stdout: str) -> dict[str, str]:
    """The compiled model's properties, as benchmark_app prints them in step 8."""
    config: dict[str, str] = {}
    for line in stdout.splitlines():
        match = _CONFIG_LINE.match(line.rstrip())
        if match:
            config.setdefault(match.group(1), match.group(2).strip())
    return config


def _precision_name(text: str) -> str:
    match = re.search(r"'([a-z0-9_]+)'", text)
    aliases = {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}
    name = match.group(1) if match else text
    return aliases.get(name, name)


def _int_or_none(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _with_async_queue(
    model: str,
    xml: Path,
    batch: int,
    shape: tuple[str, list[int]],
    duration_s: int,
    digest: str,
    tuning: Tuning,
) -> CeilingRecord:
    import numpy as np
    import openvino as ov

    name, dims = shape
    core = ov.Core()
    network = core.read_model(str(xml))
    network.reshape({name: ov.PartialShape(dims)})
    compiled = core.compile_model(network, "CPU", tuning.properties())
    nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    nstreams = _int_or_none(compiled.get_property("NUM_STREAMS"))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    data = np.random.default_rng(0).random(dims, dtype=np.float32)
    latencies_ms: list[float] = []
    queue = ov.AsyncInferQueue(compiled, nireq)
    started_at: dict[int, float] = {}

    def done(_request: Any, job: int) -> None:
        started = started_at.pop(job, None)  # None for the warm-up request
        if started is not None:
            latencies_ms.append((time.perf_counter() - started) * 1000.0)

    queue.set_callback(done)
    queue.start_async({0: data}, -1)  # warm-up
    queue.wait_all()
    latencies_ms.clear()
    job = 0
    begin = time.perf_counter()
    deadline = begin + duration_s
    while time.perf_counter() < deadline:
        started_at[job] = time.perf_counter()
        queue.start_async({0: data}, job)
        job += 1
    queue.wait_all()
    duration = time.perf_counter() - begin
    ordered = sorted(latencies_ms)
    return CeilingRecord(
        model=model,
        batch=batch,
        throughput_fps=round(job * batch / duration, 3),
        inferences_per_s=round(job / duration, 3),
        latency_median_ms=round(ordered[len(ordered) // 2], 3),
        latency_mean_ms=round(sum(ordered) / len(ordered), 3),
        latency_min_ms=round(ordered[0], 3),
        latency_max_ms=round(ordered[-1], 3),
        iterations=job,
        duration_s=round(duration, 3),
        requested_duration_s=duration_s,
        nstreams=nstreams,
        nireq=nireq,
        performance_hint=tuning.performance_hint,
        inference_precision=precision,
        method=METHOD_ASYNC_QUEUE,
        method_note="",
        **_provenance(),
        spec_hash=digest,
    )


def _provenance() -> dict[str, Any]:
    import psutil

    try:
        version = importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        version = "absent"
    return {
        "openvino_version": version,
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": os.cpu_count() or 0,
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()
