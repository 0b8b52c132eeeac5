"""Capacity of the API layer on one core: the reference server against GuideLLM's mock server and bare aiohttp.

    python -m benchmarks.server_capacity [--duration 15] [--rounds 3] [--quick] [--update-results]

All three servers run on core 0 (`taskset -c 0`), and `wrk` drives one of them at a time from core 1
(`taskset -c 1`; the others are idle meanwhile) with keep-alive connections, POSTing a chat request that asks
for 64 output tokens (`max_tokens: 64`, `ignore_eos: true`). Two numbers per server:

* non-streamed: completed requests per second;
* streamed (`"stream": true`): content chunks per second = completed streams per second × content chunks per
  stream, where that count is taken from real streamed responses read and parsed before the load starts,
  and wrk's bytes per response are checked against those responses' size (so a truncated or different
  response cannot be counted as a full one).

Each number is measured in interleaved rounds (every server and mode once per round, each after a warm-up) and
the median round is reported, so that load from elsewhere on the machine falls on all servers alike. The
report also gives the server's CPU time per unit of work, and flags runs in which the server did not get its
core or the machine was busy.

The servers:

* ours: `python -m reference_server --engine sim` at zero latency with everything on (auth, per-key limiter,
  schema validation, Prometheus metrics). Its concurrency limit is raised to 100000 so that wrk's connections
  are not answered with 429.
* GuideLLM's `guidellm mock-server` (installed on demand into `benchmarks/.venvs/guidellm`, as every benchmark
  installs the peers: `benchmarks.support.peers`) with zero TTFT/ITL and 64 output tokens, as its CLI starts it.
* `bare_server` here: a constant-body aiohttp handler under the same interpreter and uvloop as ours, the physical
  bound.

A run in which wrk saw any non-2xx status or socket error is reported as INVALID (and the command exits 1).
Everything listens on 127.0.0.1 only; every process started here is stopped on exit.

The parts, in the order the data flows: `servers` (start the three; the request they are sent), `probe` (one real
response per mode, byte for byte), `wrk` (the load, and what it cost in CPU), `measurement` (rounds, medians, what
makes a number invalid), `report` (Markdown and JSON), `__main__` (the command: orchestration and options).
"""
