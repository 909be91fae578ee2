from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base


class SshKey(Base):
    """A customer's public key, in OpenSSH's canonical one-line form (`type base64`), with its
    comment apart. One per fingerprint per account; never edited (delete and add again)."""

    __tablename__ = "ssh_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "fingerprint", name="uq_ssh_keys_user_id_fingerprint"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    key_type: Mapped[str] = mapped_column(String(40), nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    comment: Mapped[str | None] = mapped_column(String(255))
    # `SHA256:` and the unpadded base64 of the key blob's SHA-256, as `ssh-keygen -lf` prints it.
    fingerprint: Mapped[str] = mapped_column(String(60), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
