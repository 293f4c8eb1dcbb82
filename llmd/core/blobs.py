"""Content-addressed blobs under the models directory: the files an Ollama client uploads before a create.

``ollama.create()`` hashes each local file, asks ``HEAD /api/blobs/sha256:<hex>``
whether the server has it, uploads it with ``POST`` when not, and then names
it by digest in ``POST /api/create``. A blob is written to a temporary file
while its sha256 is computed, and renamed into place only when the digest
matches, so a blob that exists is always whole and what its name says.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import AsyncIterator

from llmd.errors import ValidationError

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})\Z")
_FLUSH = 1 << 20  # bytes gathered before a write: one thread hop per MiB, not per network chunk


class Blobs:
    """Blobs by sha256 digest in ``<models_dir>/blobs`` (``sha256-<hex>``, as Ollama names its own)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str, field: str = "digest") -> Path:
        """Where blob ``digest`` lives; a digest that is not ``sha256:<64 hex digits>`` is a 400 naming ``field``."""
        m = _DIGEST.match(digest)
        if m is None:
            raise ValidationError(f"{field}: a digest is 'sha256:' and 64 lowercase hex digits, got {digest!r}",
                                  field=field)
        return self.root / f"sha256-{m.group(1)}"

    async def exists(self, digest: str) -> bool:
        """Whether blob ``digest`` is stored."""
        return await asyncio.to_thread(self.path(digest).is_file)

    async def put(self, digest: str, chunks: AsyncIterator[bytes]) -> tuple[Path, bool]:
        """Store the bytes of ``chunks`` as blob ``digest``; (its path, whether it was new).

        The bytes must hash to ``digest`` (a 400 otherwise, and nothing is
        kept). A blob that is already stored is read to the end and kept.
        """
        final = self.path(digest)
        want = digest.removeprefix("sha256:")
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        tmp = self.root / f".upload-{uuid.uuid4().hex}.partial"
        sha = hashlib.sha256()
        fh = await asyncio.to_thread(open, tmp, "wb")
        try:
            buf = bytearray()
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= _FLUSH:
                    data, buf = bytes(buf), bytearray()
                    await asyncio.to_thread(_write, fh, sha, data)
            await asyncio.to_thread(_write, fh, sha, bytes(buf))
            await asyncio.to_thread(_close, fh)
            got = sha.hexdigest()
            if got != want:
                raise ValidationError(f"digest: the uploaded bytes have sha256 {got}, not {want}", field="digest",
                                      details={"expected": want, "actual": got})
            new = not await asyncio.to_thread(final.exists)
            await asyncio.to_thread(os.replace, tmp, final)
            return final, new
        finally:
            if not fh.closed:
                await asyncio.to_thread(fh.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)


def _write(fh: object, sha: hashlib._Hash, data: bytes) -> None:
    sha.update(data)
    fh.write(data)  # type: ignore[attr-defined]


def _close(fh: object) -> None:
    """Flush to the disk before the rename, so a crash never leaves a named blob with missing bytes."""
    fh.flush()  # type: ignore[attr-defined]
    os.fsync(fh.fileno())  # type: ignore[attr-defined]
    fh.close()  # type: ignore[attr-defined]
