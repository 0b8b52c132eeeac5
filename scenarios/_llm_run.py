"""A test as each Locust process sees it: options, target, prompts, records and load steps, wired to Locust's events.

The master (or a local runner) conducts: it names the run and says which load step is on — step 0 when the test
starts, the next one whenever a staged shape moves on — and sends that to the workers as an `llm:step` message.
Every process that sends requests holds a `Session` for the test: the resolved target and model, the request
bodies (built once), and its records file. Sessions are per environment, created on `test_start` — after the
preflight (`harness.target.preflight`: the target's /models, the key, the model, one streamed chat request as the users
send it), whose one-line failure stops the run with exit code 2 — and closed on `test_stop`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
from _llm_options import LLMOptions, add_options, api_base
from _llm_records import RecordSink, other_runs, records_path
from _llm_scenarios import check, choose
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.client.request import PATHS, ClientConfig, Endpoint, chunk_validator, request_body, request_headers
from harness.load.conversation import Script, Scripts, load_dialogues
from harness.load.prompts import (
    Calibration,
    LengthDistribution,
    PreparedPrompt,
    PromptItem,
    load_jsonl,
    prepare,
    synthetic,
)
from harness.records.record import Record, RunInfo, new_run_id
from harness.target import preflight
from schemas import ChatFamily, family_for_model

log = logging.getLogger("scenarios")
STEP_MESSAGE = "llm:step"
KEY_NAME = "key-1"


@dataclass(frozen=True, slots=True)
class StepAnnouncement:
    """The step on now, and what the conductor runs: a worker knows neither the shape nor which users are chosen."""

    run_id: str
    step: int
    label: str
    users: int | None
    shape: str | None = None
    user_classes: tuple[str, ...] = ()

    def message(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step": self.step,
            "label": self.label,
            "users": self.users,
            "shape": self.shape,
            "user_classes": list(self.user_classes),
        }

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> StepAnnouncement:
        users, shape = data.get("users"), data.get("shape")
        return cls(
            str(data["run_id"]),
            int(data["step"]),
            str(data["label"]),
            None if users is None else int(users),
            None if shape is None else str(shape),
            tuple(str(name) for name in data.get("user_classes") or ()),
        )


@dataclass(slots=True)
class Session:
    """One test on one process that sends requests."""

    options: LLMOptions
    base_url: str
    model: str
    family: ChatFamily | None
    items: list[PromptItem]
    run: RunInfo
    sink: RecordSink | None
    step: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    output_tokens: int = 0
    _bodies: dict[tuple[Endpoint, int | None], list[PreparedPrompt]] = field(default_factory=dict)
    _validators: dict[Endpoint, Callable[[Any], Any]] = field(default_factory=dict)
    _index: itertools.count[int] = field(default_factory=itertools.count)
    _offset: int = 0
    _warned: set[str] = field(default_factory=set)
    _scripts: Scripts | None = None
    _sessions: itertools.count[int] = field(default_factory=itertools.count)
    _session_base: int = 0  # a worker's sessions are numbered from its own base, so that their records do not mix

    @property
    def origin_ns(self) -> int:
        return self.run.origin_ns

    def url(self, endpoint: Endpoint) -> str:
        return self.base_url + PATHS[endpoint]

    def next_request(self, endpoint: Endpoint, max_tokens: int | None = None) -> tuple[Record, bytes]:
        """The next prompt in turn (each process starts at its own place in the list) and its fresh record."""
        bodies = self.prepare(endpoint, max_tokens)
        record = self.new_record(endpoint)
        prompt = bodies[(record.index + self._offset) % len(bodies)]
        record.input_tokens_target = prompt.input_tokens_target
        record.max_tokens = prompt.max_tokens
        return record, prompt.body

    def new_record(self, endpoint: Endpoint) -> Record:
        """The record of this process's next request."""
        return Record(run_id=self.run.run_id, step=self.step, index=next(self._index), key=KEY_NAME, endpoint=endpoint)

    def next_script(self) -> tuple[int, Script]:
        """The next session this process plays (`session.py`): its number in the run, and its script."""
        if self._scripts is None:
            options = self.options
            dialogues = load_dialogues(options.prompts, "jsonl", Calibration()) if options.prompts else ()
            output = LengthDistribution("fixed", options.max_tokens)
            self._scripts = Scripts(options.sessions, options.input_tokens, output, Calibration(), options.seed,
                                    dialogues=dialogues)  # fmt: skip
        number = self._session_base + next(self._sessions)
        return number, self._scripts.script(number)

    def prepare(self, endpoint: Endpoint, max_tokens: int | None = None) -> list[PreparedPrompt]:
        """The request bodies for an endpoint, built once (ValueError when a conversation cannot be formatted)."""
        found = self._bodies.get((endpoint, max_tokens))
        if found is not None:
            return found
        config = ClientConfig(base_url=self.base_url, model=self.model, endpoint=endpoint)
        prepared = prepare(config, self.items, self.family, self.options.exact_lengths, max_tokens)
        self._bodies[(endpoint, max_tokens)] = prepared
        return prepared

    def validator(self, endpoint: Endpoint) -> Callable[[Any], Any] | None:
        if not self.options.validate_chunks:
            return None
        if endpoint not in self._validators:
            self._validators[endpoint] = chunk_validator(self.options.profile, endpoint)
        return self._validators[endpoint]

    def finished(self, record: Record) -> None:
        if record.completion_tokens is not None and record.error_kind is None:
            self.output_tokens += record.completion_tokens
        for problem in record.conformance_errors:
            # Not a Locust failure (the request worked), but worth saying once; the records keep every one.
            kind = problem.split(": ", 1)[-1] if problem.startswith("chunk ") else problem  # "chunk N: ..."
            if kind not in self._warned:
                self._warned.add(kind)
                log.warning("the endpoint does not conform: %s", problem)
        if self.sink is not None:
            self.sink.write(record)

    def change_step(self, step: StepAnnouncement) -> None:
        self.step = step.step
        if self.sink is not None:
            self.sink.step(step.step, step.label)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            log.info("records: %d requests in %s", self.sink.requests, self.sink.path)


@dataclass(slots=True)
class _Process:
    """What this Locust process keeps across the tests it runs (a process has one Locust environment)."""

    session: Session | None = None
    conducted: StepAnnouncement | None = None  # master or local: the step on now
    pending: StepAnnouncement | None = None  # worker: the step the master announced, for the next test
    tests: int = 0
    refused: bool = False  # this test was stopped with a reason, which is said once
    workers_output_tokens: int = 0  # master: totalled from the workers' reports
    finished_tokens: int = 0  # output tokens of this test's closed session (its last report comes after the stop)
    reported_tokens: int = 0  # worker: output tokens already reported to the master


_PROCESS = _Process()


def _process(environment: Environment) -> _Process:
    del environment
    return _PROCESS


def session_of(environment: Environment) -> Session | None:
    """The session of the test running in this process (None when it could not start)."""
    return _process(environment).session


def announce_step(environment: Environment, step: int, label: str, users: int | None) -> None:
    """Called by the conductor (a staged shape on the master or a local runner) when the load moves on."""
    process = _process(environment)
    if process.conducted is None:
        return
    announcement = dataclasses.replace(process.conducted, step=step, label=label, users=users)
    process.conducted = announcement
    _publish(environment, announcement)


def _publish(environment: Environment, announcement: StepAnnouncement) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.send_message(STEP_MESSAGE, announcement.message())
    elif (session := _process(environment).session) is not None:
        session.change_step(announcement)


def _on_step_message(environment: Environment, msg: Any, **_: Any) -> None:
    announcement = StepAnnouncement.from_message(msg.data)
    process = _process(environment)
    if process.session is not None and process.session.run.run_id == announcement.run_id:
        process.session.change_step(announcement)
    else:
        process.pending = announcement  # it comes before the spawn message that starts the test here


def _first_step(environment: Environment) -> StepAnnouncement:
    shape = environment.shape_class
    info = shape.stage_info(0) if shape is not None and hasattr(shape, "stage_info") else None  # a StagedShape
    if info is not None:
        label, users = info
    else:
        users = environment.runner.target_user_count if environment.runner is not None else None
        label = f"{users} users" if users is not None else "steady"
    names = tuple(sorted(user.__name__ for user in environment.user_classes))
    return StepAnnouncement(new_run_id(), 0, label, users, type(shape).__name__ if shape is not None else None, names)


def _preflight(options: LLMOptions, base_url: str) -> preflight.Found:
    """The target checked before any user starts: the model found, and the streamed chat request the users send
    taken (raises `preflight.PreflightError`, one line, otherwise)."""
    check = preflight.Preflight(options.api_key)
    found = check.find(base_url, options.model)
    config = ClientConfig(base_url=found.base_url, model=found.model, endpoint="chat")
    extra = preflight.probe_extra(options.exact_lengths)
    body = request_body(config, preflight.PROBE_MESSAGES, preflight.PROBE_PROMPT, preflight.PROBE_TOKENS, extra)
    if (refusal := check.probe(found, "chat", body)) is not None:
        raise refusal.error()
    for notice in found.notices:
        log.warning("%s", notice)
    return found


def _open_session(environment: Environment, step: StepAnnouncement, test_number: int) -> Session:
    options = LLMOptions.parse(environment.parsed_options)
    if not environment.host:
        raise ValueError("no host: give -H/--host (the base URL, with or without /v1) or ANYSCALE_BASE_URL")
    if not options.api_key:
        raise ValueError("no API key: give --api-key or set ANYSCALE_API_KEY")
    found = _preflight(options, api_base(environment.host))
    base_url, model = found.base_url, found.model
    family = options.family or family_for_model(model)
    if options.prompts is not None:
        items = load_jsonl(options.prompts, options.max_tokens)
    else:
        output = LengthDistribution("fixed", options.max_tokens)
        items = synthetic(
            options.num_prompts, options.input_tokens, output, seed=options.seed, calibration=Calibration()
        )
    worker = isinstance(environment.runner, WorkerRunner)
    parsed = environment.parsed_options
    run = RunInfo.start(
        step.run_id,
        tool="locust",
        target={
            "base_url": base_url,
            "model": model,
            "profile": options.profile,
            "description": f"locust -H {environment.host}",
            "keys": [KEY_NAME],
        },
        config={
            "locustfile": getattr(parsed, "locustfile", None),
            "shape": step.shape,
            "user_classes": list(step.user_classes),
            "users": step.users,
            "spawn_rate": getattr(parsed, "spawn_rate", None),
            "worker": worker,
            "max_tokens": options.max_tokens,
            "prompts": {
                "source": "jsonl" if options.prompts is not None else "synthetic",
                "file": str(options.prompts) if options.prompts is not None else None,
                "input_tokens": None if options.prompts is not None else str(options.input_tokens),
                "exact_lengths": options.exact_lengths,
            },
            "trace_timing": options.trace_timing,
            "validate_chunks": options.validate_chunks,
            "preflight": found.config(),
            "sessions": options.sessions.describe(),
        },
    )
    sink = None
    if options.records is not None:
        path = records_path(options.records, worker=worker, test_number=test_number)
        runner = environment.runner
        # The users this process runs: its last spawn order's count (which a stop leaves as it was).
        sink = RecordSink(path, run, lambda: runner.target_user_count if runner is not None else None)
        if others := other_runs(path.parent, run.run_id):
            log.warning("%s also holds records of run(s) %s: harness report merges them all", path.parent, others)
        sink.step(step.step, step.label)
    headers = request_headers(options.api_key, trace_timing=options.trace_timing)
    # Processes start at different places in the prompt list, so that workers do not send the same prompts in step.
    offset = random.Random(f"{socket.gethostname()}-{os.getpid()}").randrange(len(items))
    base = random.Random(f"{socket.gethostname()}-{os.getpid()}").randrange(1 << 20) << 32 if worker else 0
    session = Session(options, base_url, model, family, items, run, sink, step.step, headers, _offset=offset,
                      _session_base=base)  # fmt: skip
    # Built now rather than by the first request, which would hold up every other user's reads meanwhile.
    session.prepare("chat")
    if family is not None:
        session.prepare("completion")
    return session


def refuse(environment: Environment, message: str) -> None:
    """Stop the test with exit code 2 and say why (once a test, however many users run into it)."""
    process = _process(environment)
    if process.refused:
        return
    process.refused = True
    log.error("cannot run the LLM scenario: %s", message)
    environment.process_exit_code = 2
    runner = environment.runner
    if runner is not None:
        # Headless, the run ends; in the web UI the test stops and the UI stays up for another try.
        headless = bool(getattr(environment.parsed_options, "headless", True))
        gevent.spawn(runner.quit if headless else runner.stop)


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    add_options(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    # gevent's loop caches its clock, and nothing has run it while the locustfiles were imported (a second or
    # more on a busy machine): without this, Locust's --run-time timer starts from that stale clock and fires early.
    gevent.get_hub().loop.update_now()
    # The spec's variable, read once here at the edge; Locust's own -H/LOCUST_HOST win.
    if not environment.host and (base_url := os.environ.get("ANYSCALE_BASE_URL")):
        environment.host = base_url
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(STEP_MESSAGE, _on_step_message)
    try:
        choose(environment)
    except ValueError as exc:
        # A command line that cannot run: no test, no web UI; the same exit code as a refused test.
        log.error("cannot run the LLM scenario: %s", exc)
        raise SystemExit(2) from None


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    process = _process(environment)
    process.refused = False
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        step = process.pending or StepAnnouncement(new_run_id(), 0, "steady", None)
        process.pending = None
    else:
        try:  # the web UI's class picker chooses users and shape as the test starts
            check(environment)
        except ValueError as exc:
            refuse(environment, str(exc))
            return
        step = process.conducted = _first_step(environment)
    if isinstance(runner, MasterRunner):
        try:  # fail here, once, rather than on every worker
            options = LLMOptions.parse(environment.parsed_options)
            if not options.api_key:
                raise ValueError("no API key: give --api-key or set ANYSCALE_API_KEY")
        except ValueError as exc:
            refuse(environment, str(exc))
            return
        process.workers_output_tokens = 0
        _publish(environment, step)
        return
    process.tests += 1
    process.finished_tokens = process.reported_tokens = 0
    try:
        process.session = _open_session(environment, step, process.tests)
    except preflight.PreflightError as exc:
        process.session = None
        refuse(environment, str(exc))
    except (ValueError, OSError, KeyError, IndexError, orjson.JSONDecodeError) as exc:
        process.session = None
        refuse(environment, f"{type(exc).__name__}: {exc}")


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    process = _process(environment)
    process.conducted = None
    session, process.session = process.session, None
    if session is not None:
        session.close()
        process.finished_tokens = session.output_tokens
        log.info("output tokens (from usage, successful requests): %d", session.output_tokens)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    # Output tokens counted since the last report, so that the master can total them.
    session = _PROCESS.session
    total = session.output_tokens if session is not None else _PROCESS.finished_tokens
    data["llm_output_tokens"] = total - _PROCESS.reported_tokens
    _PROCESS.reported_tokens = total


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    _PROCESS.workers_output_tokens += int(data.get("llm_output_tokens", 0))


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        log.info("output tokens (from usage, successful requests, all workers): %d", _PROCESS.workers_output_tokens)
