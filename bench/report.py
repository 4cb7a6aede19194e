"""How every benchmark reports: a short table for people (on stderr), the JSON on stdout
(what the smoke tests parse), and on full runs the JSON under bench/results/."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path


def columns(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def publish(result: dict[str, object], table: str, out: Path, name: str, smoke: bool) -> None:
    print(table, file=sys.stderr)
    print(json.dumps(result, indent=2))
    if not smoke:
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(result, indent=2) + "\n")
