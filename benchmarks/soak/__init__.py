"""Soak under faults: the reference server keeps serving and leaves nothing behind.

    python -m benchmarks.soak [--requests 10000] [--quick] [--json PATH] [--update-results]

Starts `python -m reference_server --enable-faults` (simulator, 127.0.0.1, two keys with the limit of 30) and sends
it a seeded mix of requests from 48 concurrent clients, 36 of them on one key so that it also meets its limit:

* normal streamed and non-streamed chat and completion requests;
* clients that disconnect mid-stream, after one to three events;
* client timeouts (10–80 ms) on long streams and on non-streamed requests;
* simulator faults (`x-fault`): no_done, malformed_chunk, reset, error_500, double_done, wrong_usage,
  changing_id, and stall beyond the client's timeout;
* clients that send headers and part of a body, then go away; bodies that are not JSON.

A warm-up of the same mix comes first (`--warmup-requests`); the baseline of every figure is taken after it, with
the server idle and every client connection closed, and compared with the same figures after the run:

* in flight per key (`llm_requests_in_flight`): 0;
* engine: `llm_engine_running_sequences` and `..._waiting_sequences` 0, and its requests add up: finished +
  aborted is at least the requests that got a token and at most those the HTTP layer admitted, and finished is
  at least the requests that got their whole answer;
* HTTP: per status, the server counted at least what the client saw, and no more requests than were sent;
* sockets: the server process holds no more sockets (`/proc/<pid>/fd`) than at the baseline, and no TCP
  connection of its port is left established or in CLOSE-WAIT;
* resident memory (`VmRSS`): growth under 10 %.

Exits 1 if a check fails. Bounded: the run stops dispatching after `--max-seconds`, which also fails it.

The parts: `mix` (the client side: the seeded mix, one outcome per request), `server` (the server side: what its
process holds and what it says in /metrics, once it has settled), `__main__` (the run, its checks, the report and
the command).
"""
