"""Device certificates: a device's certificate signing request in, its certificate out.

The device makes its key and keeps it; the deployment's certificate authority (`lantaarn pki`,
broker/pki.py) signs the request with the identity `{tenant}/{deviceId}` that the broker takes as
the device's username. Operators of the device's tenant may ask; another tenant's device answers
404 as if it did not exist.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Path, Request, Response, status

from api.auth import Operator, ensure_visible
from api.deps import ConfigDep, RegistryDep
from api.problems import ApiProblem, BadRequest
from broker.pki import Authority, AuthorityMissing, InvalidCsr, InvalidIdentity, device_identity
from devices import Device
from devices.topics import DEVICE_ID_PATTERN

router = APIRouter(tags=["devices"])

DeviceIdPath = Annotated[
    str, Path(alias="deviceId", pattern=f"^{DEVICE_ID_PATTERN}$", description="The device's id")
]

PEM_FILE: Final = "application/x-pem-file"
PKCS10: Final = "application/pkcs10"
JSON: Final = "application/json"
# A CSR with an RSA 8192 key is about 4 kB in PEM; anything much larger is not a CSR.
MAX_CSR_BYTES: Final = 16 * 1024

_CSR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a PKCS#10 certificate signing request made by the device with its own key",
        "content": {
            PKCS10: {"schema": {"type": "string", "description": "PEM, or DER"}},
            PEM_FILE: {"schema": {"type": "string"}},
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["csr"],
                    "properties": {"csr": {"type": "string", "description": "PEM"}},
                }
            },
        },
    }
}


@router.post(
    "/v1/devices/{deviceId}/certificate",
    status_code=status.HTTP_201_CREATED,
    response_class=Response,
    openapi_extra=_CSR_BODY,
    responses={
        201: {
            "description": "the device's certificate (PEM); its common name is tenant/deviceId",
            "content": {PEM_FILE: {"schema": {"type": "string"}}},
        },
        400: {"description": "a CSR the authority refuses, or a retired device"},
        404: {"description": "no such device"},
        413: {"description": "the body is too large for a CSR"},
        415: {"description": "not a CSR, PEM or JSON body"},
        501: {"description": "this deployment keeps no certificate authority"},
    },
)
async def sign_certificate(
    device_id: DeviceIdPath,
    request: Request,
    registry: RegistryDep,
    config: ConfigDep,
    principal: Operator,
) -> Response:
    """Sign the device's certificate signing request: its client certificate for the broker."""
    device: Device = await asyncio.to_thread(registry.device, device_id)
    ensure_visible(principal, device_id, device.tenant)
    if device.retired_at is not None:
        raise BadRequest([{"name": "deviceId", "in": "path", "reason": "the device is retired"}])
    csr = await _csr(request)
    if config.pki_dir is None:
        raise _no_authority()
    try:
        identity = device_identity(device.tenant, device.device_id)
        certificate = await asyncio.to_thread(_sign, config.pki_dir, csr, identity)
    except AuthorityMissing:
        raise _no_authority() from None
    except InvalidIdentity as exc:
        raise BadRequest([{"name": "deviceId", "in": "path", "reason": str(exc)}]) from None
    except InvalidCsr as exc:
        raise BadRequest([{"name": "csr", "in": "body", "reason": exc.reason}]) from None
    return Response(certificate, status_code=status.HTTP_201_CREATED, media_type=PEM_FILE)


def _sign(folder: pathlib.Path, csr: bytes, identity: str) -> bytes:
    return Authority.load(folder).sign_device_csr(csr, identity)


def _no_authority() -> ApiProblem:
    return ApiProblem(
        501, "Not implemented", "this deployment keeps no certificate authority (lantaarn pki init)"
    )


async def _csr(request: Request) -> bytes:
    """The CSR in the body (PEM or DER; or PEM in JSON's `csr`), read no further than the cap."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (PKCS10, PEM_FILE, JSON):
        raise ApiProblem(
            415,
            "Unsupported media type",
            f"send the CSR as {PKCS10}, {PEM_FILE} or {JSON}, not {content_type!r}",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CSR_BYTES:
            raise ApiProblem(413, "Content too large", f"a CSR has at most {MAX_CSR_BYTES} bytes")
    if content_type != JSON:
        return bytes(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    csr = document.get("csr") if isinstance(document, dict) else None
    if not isinstance(csr, str):
        raise BadRequest([{"name": "csr", "in": "body", "reason": 'send {"csr": "<PEM>"}'}])
    return csr.encode()
