"""OGC SensorThings API 1.1 (read) at `/sta/v1.1`, from the registry, the catalogue and InfluxDB."""

from api.sta.routes import CONFORMANCE, router

__all__ = ["CONFORMANCE", "router"]
