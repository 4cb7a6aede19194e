"""Where a delivery's latency goes, stage by stage, from the times the store keeps and the
producer's own clock (every process runs on this machine, so one clock):

- ingest: the POST sent -> the event built (`events.created_at`): reading the request,
  the token and permission check (cached), parsing, fan-out;
- acknowledged: the event built -> the producer got its 202, which the service sends once
  the event is committed (so this bounds the commit);
- queued: the event built -> the first attempt started (`attempts.started_at`): the
  commit, the dispatcher's wake-up, the claim and the wait for a free sender;
- sent: the first attempt's round trip (`attempts.duration_ms`): connect or reuse, send,
  the receiver's answer.

`breakdown` gives each stage's percentiles over all deliveries, and its mean over the
slowest 1 % (by POST sent -> answer), which is where the tail is spent."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STAGES = ("ingest", "acknowledged", "queued", "sent")


@dataclass(frozen=True)
class Timing:
    """One delivery's times, in seconds on the machine's clock."""

    posted: float
    acknowledged: float
    created: float
    started: float
    duration: float

    def stages(self) -> dict[str, float]:
        return {
            "ingest": self.created - self.posted,
            "acknowledged": self.acknowledged - self.created,
            "queued": self.started - self.created,
            "sent": self.duration,
        }

    @property
    def total(self) -> float:
        return self.started + self.duration - self.posted


def read_sqlite(store_url: str) -> list[tuple[str, float, float, float]]:
    """(event id, event created, first attempt started, its duration in s) per delivery."""
    path = Path(store_url.removeprefix("sqlite:///"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return list(
            db.execute(
                "SELECT e.id, e.created_at, a.started_at, a.duration_ms / 1000.0"
                " FROM deliveries d JOIN events e ON e.id = d.event_id"
                " JOIN attempts a ON a.delivery_id = d.id AND a.attempt = 1"
            )
        )


def read_postgres(dsn: str) -> list[tuple[str, float, float, float]]:
    import psycopg

    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT e.id, e.created_at, a.started_at, a.duration_ms / 1000.0"
            " FROM deliveries d JOIN events e ON e.id = d.event_id"
            " JOIN attempts a ON a.delivery_id = d.id AND a.attempt = 1"
        ).fetchall()
    return [(str(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows]


def timings(
    rows: Iterable[tuple[str, float, float, float]],
    posted: dict[str, float],
    acknowledged: dict[str, float],
) -> list[Timing]:
    return [
        Timing(posted[event], acknowledged[event], created, started, duration)
        for event, created, started, duration in rows
        if event in posted and event in acknowledged
    ]


def _percentile(ordered: list[float], p: float) -> float:
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def breakdown(found: list[Timing]) -> dict[str, dict[str, float]]:
    """Per stage, in ms: p50, p99 and max over all deliveries, and the mean over the
    slowest 1 % of them ("tail")."""
    if not found:
        return {}
    slowest = sorted(found, key=lambda t: t.total)[-max(1, len(found) // 100) :]
    result: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        values = sorted(t.stages()[stage] * 1000 for t in found)
        tail = [t.stages()[stage] * 1000 for t in slowest]
        result[stage] = {
            "p50_ms": round(_percentile(values, 50), 2),
            "p99_ms": round(_percentile(values, 99), 2),
            "max_ms": round(values[-1], 2),
            "tail_mean_ms": round(sum(tail) / len(tail), 2),
        }
    return result
