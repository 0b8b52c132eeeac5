"""What every handler of one server shares, held by the aiohttp application under one typed key."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from reference_server.auth import KeyRing
from reference_server.config import ApiKey, ServerConfig
from reference_server.engines.base import Engine, ModelCard
from reference_server.faults import FaultPlan, SlotLedger
from reference_server.limiter import ConcurrencyLimiter
from reference_server.metrics import ServerMetrics
from reference_server.protocol import RequestParser
from reference_server.traces import TraceStore


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    engine: Engine
    keyring: KeyRing
    limiter: ConcurrencyLimiter
    parser: RequestParser
    metrics: ServerMetrics
    traces: TraceStore
    openapi: bytes
    cards: dict[str, ModelCard] = field(default_factory=dict)
    slot_ledger: SlotLedger = field(default_factory=SlotLedger)  # used only by the limiter faults
    draining: bool = False


STATE = web.AppKey("state", ServerState)
API_KEY = web.RequestKey("api_key", ApiKey)  # the authenticated key of a request
FAULT_PLAN = web.RequestKey("fault_plan", FaultPlan)  # a request's fault plan, parsed once from its header


def request_key(request: web.Request) -> ApiKey:
    return request[API_KEY]


def fault_plan(request: web.Request) -> FaultPlan:
    return request[FAULT_PLAN]
