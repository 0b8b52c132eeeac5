"""Service-level objectives: what a request must meet to count towards goodput."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives a request must all meet to count towards goodput."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """`ttft_ms=500,itl_ms=50,e2e_ms=10000` (any subset, also `tpot_ms`)."""
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            if not sep or name.strip() not in names:
                raise ValueError(f"bad SLO {part!r}: use {', '.join(sorted(names))} as NAME=MILLISECONDS")
            values[name.strip()] = float(raw)
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def meets(frame: pd.DataFrame, slo: Slo | None) -> pd.Series:
    good = frame["ok"].copy()
    if slo is None:
        return good
    for column, limit in (
        ("ttft_ms", slo.ttft_ms),
        ("tpot_ms", slo.tpot_ms),
        ("max_itl_ms", slo.itl_ms),
        ("e2e_from_scheduled_ms", slo.e2e_ms),
    ):
        if limit is not None:
            # A request without the sample (e.g. one token, so no gap) does not fail that objective.
            good &= frame[column].isna() | (frame[column] <= limit)
    return good
