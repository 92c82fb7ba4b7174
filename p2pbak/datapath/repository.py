"""The repository interface the archiver and restorer talk to.

Two implementations: a local folder (datapath.localrepo) and the network (client side of
p2pbak.net), which must slot in unchanged. Ids are lowercase hex strings. Everything passed
here is already encrypted (packs, snapshot records, index blobs, the wrapped key file):
a repository never sees plaintext.

`put_pack` receives the whole pack; the repository erasure-codes it (datapath.erasure) with
the k/n its suppliers call for, and `get_pack` returns the decoded pack bytes, verified
against `pack_id` (BLAKE3 of the pack bytes).
"""

from __future__ import annotations

from typing import Protocol


class Repository(Protocol):
    async def put_pack(self, pack_id: str, data: bytes) -> None: ...

    async def get_pack(self, pack_id: str) -> bytes: ...

    async def has_pack(self, pack_id: str) -> bool: ...

    async def put_snapshot(self, snapshot_id: str, blob: bytes) -> None: ...

    async def get_snapshot(self, snapshot_id: str) -> bytes: ...

    async def list_snapshots(self) -> list[str]: ...

    async def delete_snapshot(self, snapshot_id: str) -> None: ...

    async def put_index(self, index_id: str, blob: bytes) -> None: ...

    async def get_index(self, index_id: str) -> bytes: ...

    async def list_indexes(self) -> list[str]: ...

    async def get_keyfile(self) -> bytes: ...

    async def put_keyfile(self, blob: bytes) -> None: ...
