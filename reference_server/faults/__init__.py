"""Fault injection: one fault per request, chosen by the `x-fault` header, only when the server allows it.

Faults break the contract in one precise way each, so that every conformance check and every harness error path can
be shown to fire. They are an overlay on the request path: each request carries a plan (`plan`), parsed once, which
the path consults at named hook points; the plan of a request without a fault changes nothing. What the faults do is
split by where they act: `request` (what the server reads), `response` (what it writes), `slots` (the limiter).
Engines know nothing of them.
"""

from reference_server.faults.catalog import HEADER, Fault
from reference_server.faults.plan import NO_FAULT, FaultPlan, InjectedFault, UnknownFault, parse, plan_of
from reference_server.faults.slots import FaultyLimiter, SlotLedger

__all__ = [
    "HEADER",
    "NO_FAULT",
    "Fault",
    "FaultPlan",
    "FaultyLimiter",
    "InjectedFault",
    "SlotLedger",
    "UnknownFault",
    "parse",
    "plan_of",
]
