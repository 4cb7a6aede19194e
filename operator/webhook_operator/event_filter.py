"""Endpoint payload filters: a CEL expression over the event (`type`, `data`, `id`,
`timestamp`) that must be true for the endpoint to receive it.

One pure module, so that the operator (which reports a filter that does not compile on
the endpoint's status) and the delivery service (which evaluates filters at ingest) compile
with the same environment and agree on what is valid. The library, cel-expr-python (the
CEL C++ runtime), was chosen by measurement: bench/cel_libraries.py, docs/benchmarks.md.

A filter never fails an ingest: an expression that errors on one event (a missing field,
a type mismatch) or does not answer a bool counts that event as not matching, and says
why, for the caller to count. An expression that does not compile matches nothing, so
that a broken filter sends nothing it was meant to hold back.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.api.v1alpha1 import MAX_FILTER_LENGTH

VARIABLES = ("type", "id", "timestamp", "data")
_CONTAINER = "event"


@functools.cache
def _cel() -> Any:
    """The CEL module, loaded with the first filter: its runtime is about 7.5 MB resident,
    which a delivery service whose endpoints have no filter never pays."""
    from cel_expr_python import cel

    return cel


@functools.cache
def _env() -> Any:
    # `type` alone is CEL's type-of function, which the checker will not let a variable
    # shadow; declared inside a container, `type` resolves to `event.type` first (CEL's
    # name resolution), so the expression is type-checked with all four names.
    cel = _cel()
    return cel.NewEnv(
        container=_CONTAINER,
        variables={f"{_CONTAINER}.{name}": cel.Type.DYN for name in VARIABLES},
    )


# The checker's "ERROR: <input>:1:4: message" lines; the lines between them draw a caret
# under the source, which a one-line condition message cannot show.
_ERROR_LINE = re.compile(r"ERROR: <input>:(\d+:\d+): (.*)")
_IN_CONTAINER = re.compile(r" \(in container '[^']*'\)")


class Verdict(enum.Enum):
    """Why an event does not pass a filter, beyond plainly not matching: the reasons of
    the filter-error metric."""

    ERROR = "error"  # the expression failed on this event (missing field, wrong type)
    NOT_BOOL = "not_bool"  # it answered something other than true or false
    INVALID = "invalid"  # it does not compile: nothing matches


class InvalidFilter(ValueError):
    """The expression does not compile; the message is the compiler's, one line."""


def _compiler_message(exc: Exception) -> str:
    text = str(exc)
    found = [_ERROR_LINE.search(line) for line in text.splitlines()]
    errors = [f"{m.group(1)}: {m.group(2)}" for m in found if m is not None]
    message = "; ".join(errors) if errors else text.removeprefix("INVALID_ARGUMENT: ")
    return _IN_CONTAINER.sub("", message).removesuffix(" [INVALID_ARGUMENT]").strip()


def check(source: str) -> Any:
    """The compiled expression, or InvalidFilter with the compiler's message: syntax,
    names other than the four variables, type errors the checker can see, and a result
    that cannot be a bool."""
    if len(source) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"the filter is {len(source)} characters; at most {MAX_FILTER_LENGTH}")
    if not source.strip():
        raise InvalidFilter("the filter is empty; remove the field to receive every event")
    try:
        program = _env().compile(source)
    except Exception as exc:  # the binding raises RuntimeError; any failure is the same
        raise InvalidFilter(_compiler_message(exc)) from None
    result = program.return_type()
    if not any(result == t for t in (_cel().Type.BOOL, _cel().Type.DYN)):
        raise InvalidFilter(f"the filter must evaluate to a bool, not {result.name().lower()}")
    return program


@dataclass(frozen=True)
class Filter:
    """A compiled filter as the delivery service keeps it per endpoint config. Equal by
    source, so an unchanged endpoint config compares equal after a recompile."""

    source: str
    program: Any = field(compare=False, repr=False)
    error: str | None = None  # the compiler's message when it does not compile

    def evaluate(self, event: Bindings) -> bool | Verdict:
        """True when the event passes; False when it plainly does not; a Verdict when it
        does not because of the filter itself."""
        if self.program is None:
            return Verdict.INVALID
        activation = event.activation()
        if activation is None:
            return Verdict.ERROR
        try:
            value = self.program.eval(activation)
            result = value.value()
        except Exception:  # no event may fail ingest because of a filter
            return Verdict.ERROR
        if isinstance(result, bool):
            return result
        return Verdict.ERROR if value.type() == _cel().Type.ERROR else Verdict.NOT_BOOL


@functools.lru_cache(maxsize=1024)
def compile_filter(source: str) -> Filter:
    """The endpoint's filter, compiled once per distinct source (the registry rebuilds
    every endpoint of an app when the app changes)."""
    try:
        return Filter(source, check(source))
    except InvalidFilter as exc:
        return Filter(source, None, str(exc))


class Bindings:
    """One event's variables, converted for CEL when the first filter needs them and
    shared by every endpoint's filter for that event."""

    __slots__ = ("_activation", "_converted", "_values")

    def __init__(self, type_: str, id_: str, timestamp: str, data: Any) -> None:
        self._values = {
            "event.type": type_,
            "event.id": id_,
            "event.timestamp": timestamp,
            "event.data": data,
        }
        self._activation: Any = None
        self._converted = False

    def activation(self) -> Any:
        """The CEL activation, or None when the event's values cannot be converted."""
        if not self._converted:
            self._converted = True
            try:
                self._activation = _env().Activation(self._values)
            except Exception:
                self._activation = None
        return self._activation
