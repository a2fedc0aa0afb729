"""What leadpipe has proven about the tenant it talks to, kept in the state folder.

The lookup that decides whether an uncertain row is sent again (``/simpleleads`` since the
attempt) is only trustworthy if it demonstrably sees this account's leads, with their data.
That is proven either by ``leadpipe doctor --test-upload`` (one marked test lead, looked up at
once) or by any reconciliation whose lookup found the leads the ledger knows were created.
The proof also records how the tenant marks "uploaded by this account" (learned from a lead the
account created, never assumed) and the shape of the ``POST /leads`` answer.

A proof belongs to one tenant and login (``TenantProof.tenant``): pointing leadpipe at another
API or account starts without one. See ``docs/api-contract.md``, "Reconciliation".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.files import atomic_write_text

PROOF_FILE = "tenant-proof.json"
#: Fields of ``uploadedByUser`` that can say who uploaded a lead, in order of preference.
IDENTITY_FIELDS = ("orgCode", "username", "userName", "uniqueId", "id", "email", "name")


@dataclass(frozen=True)
class TenantProof:
    """What was proven about one tenant and login, and how."""

    tenant: str  #: the API URL (without credentials) and the login
    lookup_sees_ours: bool = False  #: the reconciliation lookup returned leads we created
    lookup_has_data: bool = False  #: ... with their data fields (rows can be matched by data)
    identity_field: str = ""  #: e.g. ``uploadedByUser.orgCode`` ("" = not known)
    identity_value: str = ""  #: this account's value of that field
    post_answer: str = ""  #: where a ``POST /leads`` answer carries the id, in words
    proven_at: str = ""
    how: str = ""  #: e.g. "doctor --test-upload on campaign TEST-IMPORT"
    exports: dict[str, bool] = field(default_factory=dict)  #: export name -> finds the lead

    @property
    def identity(self) -> tuple[str, str] | None:
        """``(field, value)`` marking this account's leads, when it was learned."""
        return (self.identity_field, self.identity_value) if self.identity_field else None

    @property
    def lookup_proven(self) -> bool:
        """The lookup may declare a row absent (it sees our leads and their data)."""
        return self.lookup_sees_ours and self.lookup_has_data


def tenant_key(api_url: str, user: str) -> str:
    """The tenant a proof belongs to: API URL (no credentials) and login, lower case."""
    from pipeline.api.transport import safe_url

    return f"{safe_url(api_url or 'embedded sandbox')} as {user}".lower()


class ProofStore:
    """The proof for one tenant in ``<state>/tenant-proof.json`` (private file; thread-safe)."""

    @classmethod
    def for_settings(cls, settings: Settings) -> ProofStore:
        """The store for the configured API and login, in the configured state folder."""
        return cls(settings.paths.state, tenant_key(settings.api.url, settings.api.user))

    def __init__(self, state_dir: Path | None, tenant: str) -> None:
        self.path = Path(state_dir) / PROOF_FILE if state_dir is not None else None
        self.tenant = tenant
        self._lock = threading.Lock()
        self._memory: TenantProof | None = None

    def load(self) -> TenantProof | None:
        """The recorded proof for this tenant, or None (none, another tenant's, unreadable)."""
        with self._lock:
            if self._memory is not None:
                return self._memory
            if self.path is None:
                return None
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if not isinstance(data, dict) or data.get("tenant") != self.tenant:
                return None
            known = set(TenantProof.__dataclass_fields__)
            try:
                proof = TenantProof(**{k: v for k, v in data.items() if k in known})
            except TypeError:
                return None
            self._memory = proof
            return proof

    def save(self, proof: TenantProof) -> None:
        """Record ``proof`` (with the time) for this tenant."""
        proof = replace(
            proof, tenant=self.tenant, proven_at=datetime.now(UTC).isoformat(timespec="seconds")
        )
        with self._lock:
            self._memory = proof
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                text = json.dumps(asdict(proof), indent=2, ensure_ascii=False) + "\n"
                atomic_write_text(self.path, text, mode=0o600)

    def record_sight(self, identity: tuple[str, str] | None, how: str) -> None:
        """A lookup found our leads with their data: remember it (and the identity learned)."""
        old = self.load() or TenantProof(self.tenant)
        field_, value = identity or (old.identity_field, old.identity_value)
        if old.lookup_proven and (field_, value) == (old.identity_field, old.identity_value):
            return  # nothing new: no write per reconciliation
        self.save(
            replace(
                old,
                lookup_sees_ours=True,
                lookup_has_data=True,
                identity_field=field_,
                identity_value=value,
                how=how,
            )
        )


def uploader_of(raw: Mapping[str, Any]) -> dict[str, str]:
    """The scalar fields of a lead's ``uploadedByUser`` (any key case), as ``path -> value``."""
    by = next((v for k, v in raw.items() if str(k).lower() == "uploadedbyuser"), None)
    if not isinstance(by, Mapping):
        return {}
    return {
        f"uploadedByUser.{k}": str(v)
        for k, v in by.items()
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v)
    }


def learn_identity(raws: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The ``uploadedByUser`` field whose value all of these leads (ours) share, or None."""
    shared: dict[str, str] | None = None
    for raw in raws:
        fields = uploader_of(raw)
        if shared is None:
            shared = fields
        else:
            shared = {k: v for k, v in shared.items() if fields.get(k) == v}
        if not shared:
            return None
    if not shared:
        return None
    for name in IDENTITY_FIELDS:
        for path, value in shared.items():
            if path.lower() == f"uploadedbyuser.{name.lower()}":
                return path, value
    path = sorted(shared)[0]
    return path, shared[path]


def is_ours(raw: Mapping[str, Any], identity: tuple[str, str] | None) -> bool:
    """False only when the lead names an uploader and it is not this account."""
    if identity is None or not identity[0]:
        return True
    fields = {k.lower(): v for k, v in uploader_of(raw).items()}
    found = fields.get(identity[0].lower())
    return found is None or found.casefold() == identity[1].casefold()
