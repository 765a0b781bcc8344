"""The dashboard's files from memory: each read and compressed once per change, with a strong ETag.

StaticFiles reads a file from disk on every request (in a worker thread) and the GZip middleware
compresses it again each time: about 3 ms of the API's CPU per file, and the page asks for some
twenty files at once when it opens, while its first API calls wait for the same CPU. Here a file
costs that once, until it changes on disk (its modification time or size), and then a dictionary
lookup and a `stat`. Browsers keep the files (`Cache-Control: no-cache`, set with the other
headers in `api.app`) and ask again with `If-None-Match`: a 304 without a body when unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.etag import matches

# As the API's GZip middleware: smaller answers are not worth compressing.
_MINIMUM_GZIP_BYTES: Final = 1024
_COMPRESSIBLE: Final = ("text/", "application/json", "image/svg+xml")


@dataclass(frozen=True, slots=True)
class _File:
    stamp: tuple[int, int]  # modification time (ns) and size (bytes) when read
    body: bytes
    gzipped: bytes | None  # None when not worth compressing
    etag: str
    media_type: str


class DashboardFiles:
    """The files under one folder, answered from memory (GET); names outside it are 404."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._files: dict[Path, _File] = {}

    def answer(self, request: Request, name: str) -> Response:
        """The file `name` (relative to the folder), gzip'd when the browser accepts it."""
        file = self._file(name)
        headers = {"ETag": file.etag, "Vary": "Accept-Encoding"}
        if matches(request, file.etag):
            return Response(status_code=304, headers=headers)
        body = file.body
        if file.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = file.gzipped
            headers["Content-Encoding"] = "gzip"  # the GZip middleware leaves it as it is
        return Response(body, media_type=file.media_type, headers=headers)

    def _file(self, name: str) -> _File:
        path = (self.folder / name).resolve()
        try:
            found = path.stat()
        except OSError:
            raise HTTPException(404) from None
        if not path.is_relative_to(self.folder) or not stat.S_ISREG(found.st_mode):
            raise HTTPException(404)
        stamp = (found.st_mtime_ns, found.st_size)
        kept = self._files.get(path)
        if kept is not None and kept.stamp == stamp:
            return kept
        body = path.read_bytes()
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        compressible = media_type.startswith(_COMPRESSIBLE) and len(body) >= _MINIMUM_GZIP_BYTES
        file = _File(
            stamp=stamp,
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0) if compressible else None,
            etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
            media_type=media_type,
        )
        self._files[path] = file
        return file
