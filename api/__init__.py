"""The HTTP API (FastAPI) and the dashboard it serves."""

from api.app import create_app
from api.config import API_VERSION, ApiConfig

__all__ = ["API_VERSION", "ApiConfig", "create_app"]
