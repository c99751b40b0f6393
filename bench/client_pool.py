"""What servelab-load costs, and whether it can be the bottleneck. Prints figures only.

1. Import time of the client (fresh interpreter, median of a few).
2. Cost: requests per client CPU-second against refserver (OpenVINO) serving `tiny`,
   for the default mode (servelab's own HTTP/2 client), `--api servelab-grpcio`
   (the same messages over grpcio, for comparison) and `--api tensorflow-serving-api`
   (the published clients), and the ratio of the default to the published clients
   (target: default at least 2x cheaper).
3. Footprint: peak resident memory per worker process sending real batch-1
   ResNet inputs (224x224x3 golden samples) to refserver serving resnet_v1_50.
4. Never the bottleneck: a concurrency sweep against refserver (OpenVINO,
   resnet_v1_50, batch 1), throughput against the in-process ceiling of the same
   model (measured afresh by `servelab models ceiling` at the start of the sweep,
   so a figure stored on a busy machine never stands in), with the pool's CPU share.

Every figure is printed next to its target; the exit status is 1 when one misses.

    .venv/bin/python -m bench.client_pool                  # a few minutes
    .venv/bin/python -m bench.client_pool --skip-resnet    # only 1 and 2

Models are built once into --repo (default ~/.cache/servelab/bench-models).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.support.load import load_command
from tests.support.refserver import running_refserver

REPO_ROOT = Path(__file__).resolve().parent.parent


DEFAULT_REPO = Path("~/.cache/servelab/bench-models").expanduser()

# The figures that missed their targets, for the exit status.
MISSED: list[str] = []


def verdict(ok: bool, what: str) -> str:
    if not ok:
        MISSED.append(what)
    return "ok" if ok else "MISSED"


def ensure_models(repo: Path, models: list[str]) -> None:
    command = [sys.executable, "-m", "servelab.controller", "models", "build", "--repo", str(repo)]
    result = subprocess.run(
        [*command, "--models", *models], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"building {models} into {repo} failed:\n{result.stderr[-2000:]}")


def load(target: str, repo: Path, model: str, *extra: str) -> dict:
    command = load_command(target, repo, *extra, model=model)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        sys.exit(f"servelab-load failed ({result.returncode}): {result.stderr.strip()}")
    summary = json.loads(result.stdout)
    if summary["problems"]:
        print(f"  ! {model} {' '.join(extra)}: {summary['problems']}")
    return summary


def import_time() -> None:
    code = (
        "import time; t = time.perf_counter(); "
        "import servelab.clients.cli, servelab.clients.worker, servelab.clients.pool; "
        "print(time.perf_counter() - t)"
    )
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(5)
    ]
    median_ms = statistics.median(runs) * 1e3
    print(
        f"import servelab.clients (cli, pool, worker; fresh process): "
        f"median {median_ms:.0f} ms, max {max(runs) * 1e3:.0f} ms "
        f"(target < 1000 ms: {verdict(median_ms < 1000, 'import time')})"
    )


def cost(repo: Path, seconds: float, concurrency: int) -> None:
    print(
        f"\ncost against refserver openvino, tiny, batch 1, concurrency {concurrency} "
        f"(one thread per client in tensorflow-serving-api mode), 1 process, {seconds:g} s window"
    )
    window = ("--warmup", "1", "--duration", f"{seconds:g}", "--cooldown", "0.2", "--timeout", "10")
    results = {}
    with running_refserver("openvino", repo, model="tiny", nireq=concurrency) as server:
        for api in ("servelab", "servelab-grpcio", "tensorflow-serving-api"):
            summary = load(
                server.target,
                repo,
                "tiny",
                "--api",
                api,
                "--concurrency",
                str(concurrency),
                "--processes",
                "1",
                *window,
            )
            pool = summary["pool"]
            results[api] = pool["requests_per_cpu_s"]
            print(
                f"  {api:24s} {summary['throughput']['requests_per_s']:8.0f} req/s  "
                f"{pool['window_cpu_s']:6.2f} CPU-s  {pool['requests_per_cpu_s']:7.0f} req/CPU-s  "
                f"peak RSS/worker {pool['peak_rss_mb_per_worker']:.0f} MB"
            )
    if not all(results.values()):
        print("  no ratio: a mode completed no request (see the problems above)")
        return
    ratio = results["servelab"] / results["tensorflow-serving-api"]
    ok = verdict(ratio >= 2, f"cost ratio {ratio:.2f}x at concurrency {concurrency}")
    print(
        f"  default is {ratio:.2f}x cheaper per request than tensorflow-serving-api "
        f"(target >= 2: {ok}); servelab-grpcio is "
        f"{results['servelab-grpcio'] / results['tensorflow-serving-api']:.2f}x"
    )


def resnet(repo: Path, seconds: float, sweep: list[int], processes: int) -> None:
    from servelab.server.modelrepo.ceiling import load_ceiling

    model = "resnet_v1_50"
    # Measured afresh: a stored ceiling may come from a busier machine.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "servelab.controller",
            "models",
            "ceiling",
            "--repo",
            str(repo),
            "--models",
            model,
            "--batches",
            "1",
            "--duration",
            "10",
        ],
        check=True,
        capture_output=True,
    )
    ceiling = load_ceiling(repo)[(model, 1)]
    print(
        f"\n{model} batch 1: in-process ceiling {ceiling.throughput_fps:.1f} fps "
        f"(nireq {ceiling.nireq})"
    )
    window = ("--warmup", "2", "--duration", f"{seconds:g}", "--cooldown", "0.5")
    with running_refserver("openvino", repo, model=model) as server:
        summary = load(
            server.target,
            repo,
            model,
            "--concurrency",
            "1",
            "--processes",
            "1",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--cooldown",
            "0",
        )
        rss_mb = summary["pool"]["peak_rss_mb_per_worker"]
        print(
            f"  footprint: peak RSS per worker with batch-1 224x224x3 golden inputs "
            f"{rss_mb:.0f} MB (target < 150 MB: {verdict(rss_mb < 150, 'memory per worker')})"
        )
        print(
            f"  {'clients':>7s} {'fps':>8s} {'of ceiling':>10s} {'p50 ms':>8s} "
            f"{'pool CPU share':>15s} {'errors':>7s}"
        )
        best = 0.0
        for concurrency in sweep:
            summary = load(
                server.target,
                repo,
                model,
                "--concurrency",
                str(concurrency),
                "--processes",
                str(min(processes, concurrency)),
                *window,
            )
            fps = summary["throughput"]["frames_per_s"]
            best = max(best, fps / ceiling.throughput_fps)
            errors = sum(summary["requests"]["errors"].values())
            print(
                f"  {concurrency:7d} {fps:8.1f} {fps / ceiling.throughput_fps:10.0%} "
                f"{summary['latency_ms']['p50'] or 0:8.1f} "
                f"{summary['pool']['cpu_share_of_host']:15.1%} {errors:7d}"
            )
        ok = verdict(best >= 0.9, f"best served throughput {best:.0%} of the ceiling")
        print(f"  best: {best:.0%} of the in-process ceiling (target >= 90%: {ok})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--seconds", type=float, default=5.0, help="window per point")
    parser.add_argument("--cost-concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--sweep", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()

    import_time()
    ensure_models(args.repo, ["tiny"] if args.skip_resnet else ["tiny", "resnet_v1_50"])
    for concurrency in args.cost_concurrency:
        cost(args.repo, args.seconds, concurrency)
    if not args.skip_resnet:
        resnet(args.repo, args.seconds, args.sweep, args.processes)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    for missed in MISSED:
        print(f"MISSED: {missed}")
    return 1 if MISSED else 0


if __name__ == "__main__":
    sys.exit(main())
