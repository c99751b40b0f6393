"""servelab-load: the closed-loop client pool that drives and verifies a model server.

`cli` (the command), `pool` (the parent process), `worker` (one worker process, the
schedule and the grpcio engines), `h2engine` (the default engine: gRPC calls over
servelab's own HTTP/2), `h2` (one client-side HTTP/2 connection: frames, flow
control, streams), `workload` (target check, input batch), `verify` (response
checks), `stats` (outcomes and per-worker accumulation), `histogram` (mergeable
latency histogram), `summary` (the JSON summary). Nothing here imports TensorFlow
unless the opt-in `--api tensorflow-serving-api` mode runs.
"""
