"""What a SensorThings request can get wrong: malformed (400) or beyond what we implement (501)."""

from __future__ import annotations


class StaError(Exception):
    """A SensorThings request we cannot answer; `status` is the HTTP status to answer with."""

    status = 400
    title = "Bad SensorThings request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class QuerySyntaxError(StaError):
    """A query option or resource path that does not parse (400)."""

    title = "Malformed SensorThings query"


class QueryTypeError(StaError):
    """An expression that parses but makes no sense for the values it meets (400)."""

    title = "Invalid SensorThings expression"


class NotSupported(StaError):
    """Valid SensorThings that this server does not implement (501): never a wrong answer."""

    status = 501
    title = "Not implemented by this SensorThings server"


class EntityNotFound(StaError):
    """No entity with that id, or one the caller may not see (404)."""

    status = 404
    title = "No such SensorThings entity"
