"""Which CEL library evaluates endpoint filters: compile and evaluate times of the three
candidates on PyPI, for a typical filter over a typical event, measured here rather than
taken from their READMEs. Ingest evaluates one filter per subscribed endpoint per event,
so the figure that matters is "ten filters over one event".

    .venv/bin/python -m bench.cel_libraries            (about ten seconds)
    .venv/bin/python -m bench.cel_libraries --smoke    (tiny, for CI)

A candidate that is not installed is reported as such; only the chosen one is a project
dependency (pip install cel-python common-expression-language to compare all three)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

FILTER = 'data.amount > 1000 && data.currency == "EUR"'
# Ten endpoints, ten different filters: what ingest evaluates for one event.
FILTERS = [f'data.amount > {1000 + n} && data.currency == "EUR"' for n in range(9)] + [
    'type == "invoice.paid" && data.customer.country in ["DE", "FR"]'
]
EVENT: dict[str, Any] = {
    "id": "evt_2Kq0m1xZ3vY8",
    "type": "invoice.paid",
    "timestamp": "2026-12-02T13:00:00.000Z",
    "data": {
        "amount": 1500,
        "currency": "EUR",
        "customer": {"id": "cus_123", "country": "DE", "email": "a@example.com"},
        "lines": [{"sku": f"sku-{n}", "quantity": n} for n in range(5)],
    },
}

Candidate = tuple[Callable[[str], Any], Callable[[list[Any], dict[str, Any]], list[Any]]]


def _cel_expr_python() -> Candidate:
    from cel_expr_python import cel

    # As webhook_operator.event_filter sets it up: the variables declared (checked at
    # compile time) in a container, since `type` alone names CEL's type-of function.
    env = cel.NewEnv(
        container="event",
        variables={f"event.{k}": cel.Type.DYN for k in ("type", "id", "timestamp", "data")},
    )

    def evaluate(programs: list[Any], event: dict[str, Any]) -> list[Any]:
        activation = env.Activation({f"event.{k}": v for k, v in event.items()})
        return [p.eval(activation).value() for p in programs]  # converted once, shared

    return env.compile, evaluate


def _common_expression_language() -> Candidate:
    import cel

    def evaluate(programs: list[Any], event: dict[str, Any]) -> list[Any]:
        context = cel.Context(event)
        return [p.execute(context) for p in programs]

    return cel.compile, evaluate


def _cel_python() -> Candidate:
    import celpy

    env = celpy.Environment()

    def compile_(source: str) -> Any:
        return env.program(env.compile(source))

    def evaluate(programs: list[Any], event: dict[str, Any]) -> list[Any]:
        activation = celpy.json_to_cel(event)
        return [p.evaluate(activation) for p in programs]

    return compile_, evaluate


CANDIDATES: dict[str, Callable[[], Candidate]] = {
    "cel-expr-python": _cel_expr_python,
    "common-expression-language": _common_expression_language,
    "cel-python": _cel_python,
}


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call of `fn`, over about `seconds` (best of three rounds)."""
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds / 10:
        fn()
        calls += 1
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - began) / calls)
    return best * 1e6


def measure(name: str, seconds: float) -> dict[str, Any]:
    try:
        compile_, evaluate = CANDIDATES[name]()
    except ImportError as exc:
        return {"library": name, "installed": False, "error": str(exc)}
    one = [compile_(FILTER)]
    ten = [compile_(f) for f in FILTERS]
    answers = evaluate(ten, EVENT)
    if [bool(a) for a in answers] != [True] * 10:
        raise AssertionError(f"{name} answered {answers}")
    return {
        "library": name,
        "installed": True,
        "compile_us": round(_per_call(lambda: compile_(FILTER), seconds), 1),
        "one_filter_us": round(_per_call(lambda: evaluate(one, EVENT), seconds), 1),
        "ten_filters_us": round(_per_call(lambda: evaluate(ten, EVENT), seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="per figure")
    parser.add_argument("--smoke", action="store_true", help="tiny, for CI")
    args = parser.parse_args()
    seconds = 0.05 if args.smoke else args.seconds
    results = [measure(name, seconds) for name in CANDIDATES]
    print(json.dumps(results, indent=2))
    print(f"{'library':28} {'compile µs':>11} {'1 filter µs':>12} {'10 filters µs':>14}")
    for r in results:
        if r["installed"]:
            print(
                f"{r['library']:28} {r['compile_us']:>11} {r['one_filter_us']:>12}"
                f" {r['ten_filters_us']:>14}"
            )
        else:
            print(f"{r['library']:28} not installed")


if __name__ == "__main__":
    main()
