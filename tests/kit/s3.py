"""`ObjectStore` over a dict, with ETags, conditional GETs and injectable outages."""

from __future__ import annotations

import hashlib

from vaultbundle.errors import S3UnreachableError
from vaultbundle.remote import MAX_OBJECT_BYTES, ObjectMissing, ObjectStore, PreconditionFailed, StoredObject


class MemoryObjects:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.requests = 0
        self.downloads: list[str] = []  # keys whose body was transferred (a 304 is not a download)
        self.down = False  # every request fails like an unreachable endpoint

    @staticmethod
    def etag(body: bytes) -> str:
        return '"' + hashlib.md5(body).hexdigest() + '"'

    def _request(self) -> None:
        self.requests += 1
        if self.down:
            raise S3UnreachableError("S3 get_object failed: EndpointConnectionError")

    def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        max_bytes: int = MAX_OBJECT_BYTES,
        require_length: bool = False,  # a dict always knows its sizes: every object "declares" its length
    ) -> StoredObject | None:
        self._request()
        if key not in self.objects:
            raise ObjectMissing(key)
        etag = self.etag(self.objects[key])
        if if_none_match == etag:
            return None
        self.downloads.append(key)
        return StoredObject(self.objects[key], etag)

    def put(self, key: str, body: bytes, *, create_only: bool = False, if_match: str | None = None) -> str:
        self._request()
        if create_only and key in self.objects:
            raise PreconditionFailed(f"S3 put_object of {key!r} failed: PreconditionFailed")
        if if_match and (key not in self.objects or self.etag(self.objects[key]) != if_match):
            raise PreconditionFailed(f"S3 put_object of {key!r} failed: PreconditionFailed")
        self.objects[key] = body
        return self.etag(body)

    def list_keys(self, prefix: str) -> list[str]:
        self._request()
        return sorted(key for key in self.objects if key.startswith(prefix))


def _conforms(objects: MemoryObjects) -> ObjectStore:
    return objects  # mypy proves MemoryObjects is an ObjectStore
