"""What the NLGov API Design Rules ask of the OpenAPI document, added where FastAPI leaves it out.

Spectral checks them with tests/api/spectral/nlgov-adr.yaml (tests/api/test_adr_lint.py):
- every successful answer declares the `API-Version` header it carries (nlgov:missing-header);
- the document names its server (oas3-api-servers);
- a fixed-length array (a GeoJSON position, `prefixItems`) also says what its items are, so
  OpenAPI 3.0 tools and Spectral's `array-items` read it.
- the contact has an e-mail address (nlgov:info-contact-fields-exist; added here, since FastAPI's
  own contact model checks addresses only with the email-validator package installed).
Problem documents for errors are api/problems.py's.
"""

from __future__ import annotations

from typing import Any, Final

from api.config import API_VERSION

VERSION_HEADER: Final = "API-Version"
CONTACT_EMAIL: Final = "developers@lantaarn.invalid"
_VERSION_REF: Final = {"$ref": f"#/components/headers/{VERSION_HEADER}"}


def _declare_version(schema: dict[str, Any]) -> None:
    headers = schema.setdefault("components", {}).setdefault("headers", {})
    headers[VERSION_HEADER] = {
        "description": "The full version of the API that answered (semantic versioning)",
        "required": True,
        "schema": {"type": "string", "example": API_VERSION},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if str(code).startswith("2"):
                    response.setdefault("headers", {})[VERSION_HEADER] = dict(_VERSION_REF)


def _typed_items(node: Any) -> None:
    """Give every `prefixItems` array without `items` the type its positions share."""
    if isinstance(node, dict):
        prefix = node.get("prefixItems")
        if node.get("type") == "array" and isinstance(prefix, list) and "items" not in node:
            node["items"] = prefix[0] if prefix and all(p == prefix[0] for p in prefix) else {}
        for value in node.values():
            _typed_items(value)
    elif isinstance(node, list):
        for value in node:
            _typed_items(value)


def document(schema: dict[str, Any], *, public_url: str | None) -> None:
    """Add what the design rules ask to the OpenAPI document (in place)."""
    _declare_version(schema)
    # Without a configured address the server is "/": clients resolve it against the URL they
    # fetched the document from, which is right behind any proxy.
    schema["servers"] = [
        {"url": (public_url or "").rstrip("/") or "/", "description": "this lantaarn platform"}
    ]
    _typed_items(schema.get("components", {}))
    schema.setdefault("info", {}).setdefault("contact", {}).setdefault("email", CONTACT_EMAIL)
