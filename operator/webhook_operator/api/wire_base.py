"""The base of every request and answer model of the project's HTTP APIs: camelCase on the
wire, field docstrings as their descriptions in /openapi.json, unknown request fields
refused. Plain pydantic, so the shapes can be shared by the servers that answer with them
and the clients that read them without either importing the other's HTTP stack."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        serialize_by_alias=True,
    )


class Answer(Wire):
    """An answer another process of the project reads back (the portal reads the delivery
    service's): a field added by a newer server is ignored by an older reader instead of
    failing it, so the two can be upgraded one after the other."""

    model_config = ConfigDict(extra="ignore")
