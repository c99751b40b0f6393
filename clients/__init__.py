"""servelab-load: the closed-loop client pool that drives and verifies a model server.

`cli` (the command), `pool` (the parent process), `worker` (one worker process and
its engines), `workload` (target check, input batch), `verify` (response checks),
`stats` (outcomes and per-worker accumulation), `histogram` (mergeable latency
histogram), `summary` (the JSON summary). Nothing here imports TensorFlow unless
the opt-in `--api tensorflow-serving-api` mode runs.
"""
