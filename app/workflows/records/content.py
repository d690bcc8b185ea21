"""Sealing and opening a record's title and content (§6.6).

Each record has its own data key, wrapped by the keyring's master key; the title and
content are encrypted under it, bound to the record's id and the field's name.
"""

from __future__ import annotations

import uuid

from app.core.crypto import Keyring, decrypt, encrypt
from app.core.encrypted import opening
from app.models.records import RecordContent
from app.workflows.records.queries import ReadRow


def aad(record_id: uuid.UUID, field: str) -> bytes:
    """The associated data that binds a ciphertext to its record and field."""
    return record_id.bytes + b":" + field.encode()


def seal_content(keyring: Keyring, record_id: uuid.UUID, *, title: str, content: str) -> RecordContent:
    key, kid, wrapped = keyring.new_data_key(aad=aad(record_id, "key"))
    return RecordContent(
        record_id=record_id,
        key_id=kid,
        wrapped_key=wrapped,
        title_ct=encrypt(key, title.encode(), aad(record_id, "title")),
        content_ct=encrypt(key, content.encode(), aad(record_id, "content")),
    )


def open_content(keyring: Keyring, rc: RecordContent | ReadRow, *, with_content: bool = True,
                 ) -> tuple[str, str | None]:
    """Title and content of a content row (an entity, or its columns as read by the hot path);
    IntegrityFailure if they do not open as this record's (§6.6)."""
    key = data_key(keyring, rc)
    with opening("record_contents", "title_ct", [rc.record_id]):
        title = decrypt(key, rc.title_ct, aad(rc.record_id, "title")).decode()
    if not with_content:
        return title, None
    with opening("record_contents", "content_ct", [rc.record_id]):
        return title, decrypt(key, rc.content_ct, aad(rc.record_id, "content")).decode()


def data_key(keyring: Keyring, rc: RecordContent | ReadRow) -> bytes:
    """The record's data key, unwrapped; IntegrityFailure if it is not this record's (§6.6)."""
    with opening("record_contents", "wrapped_key", [rc.record_id]):
        return keyring.unwrap(rc.key_id, rc.wrapped_key, aad=aad(rc.record_id, "key"))
