"""Dependencies of the routes: the registry, the time-series client, the configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.config import ApiConfig
from api.fleet import FleetCache
from devices import Registry
from timeseries import InfluxClient


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _fleet(request: Request) -> FleetCache:
    fleet: FleetCache = request.app.state.fleet
    return fleet


def _influx(request: Request) -> InfluxClient:
    client: InfluxClient = request.app.state.influx
    return client


def _config(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


RegistryDep = Annotated[Registry, Depends(_registry)]
InfluxDep = Annotated[InfluxClient, Depends(_influx)]
FleetDep = Annotated[FleetCache, Depends(_fleet)]
ConfigDep = Annotated[ApiConfig, Depends(_config)]
