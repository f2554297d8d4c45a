"""The ``espocrm`` CRM connector: leads and custom records of one tenant in EspoCRM 8.3.

Tenancy: every record written carries ``tenant_field`` (``tenantId``), every search
ANDs ``tenantId = <tenant>`` in, and a record read by id that belongs to another
tenant is "not found". The returned record of every write is checked for the tenant:
an EspoCRM whose customization was not rebuilt drops the field silently, which would
leave a lead visible to no tenant (or every one); that is a loud error instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from maxcore.connectors import ConnectorContext, CRMBase, LeadQuery
from maxcore.errors import PermanentError, ToolError
from maxcore.leads import normalise_email, normalise_phone, with_defaults
from maxcore.types import Health, Lead, Record, UpsertResult
from maxcore.vocabulary import LeadSchema

from .client import REBUILD_HINT, EspoClient, encode_where
from .config import EspoCRMConfig
from .options import LEAD_CUSTOM_ATTRIBUTES
from .vocabulary import lead_schema, strip_bad_characters

# Lead identity (core) → EspoCRM Lead attribute; the declared fields keep their names.
_IDENTITY_ATTRIBUTES = {
    "first_name": "firstName", "last_name": "lastName", "phone": "phoneNumber",
    "email": "emailAddress", "company": "accountName",
}
_TEXT_FIELDS = ("first_name", "last_name", "company")
# EspoCRM 8.3's answer to a where item on an unknown attribute (Core/Select/Where/Checker.php).
_MISSING_ATTRIBUTE_RE = re.compile(r"Not existing attribute '([^']+)'")
_NEVER_FROM_INPUT = {"id", "tenant_id", "deleted", "createdById", "modifiedById"}
# Attributes naming users or teams (assignedUserId, teamsIds, assignedUsersIds, ...):
# only the tenant's configured ones are written, never what a model sent.
_USER_OR_TEAM_RE = re.compile(r"(?:user|team)s?(?:Id|Ids|Name|Names)$", re.IGNORECASE)
# EspoCRM ids (17 hex-like characters; longer for imported ones): anything else is no id.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_record_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


class EspoCRM(CRMBase):
    name = "espocrm"
    Config = EspoCRMConfig

    def __init__(self, config: EspoCRMConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        context.add_secret(config.api_key)
        if config.secret_key:
            context.add_secret(config.secret_key)
        self.entities: tuple[str, ...] = tuple(config.entities)
        self._client: EspoClient | None = None
        self._declared = lead_schema(config.synonyms)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def client(self) -> EspoClient:
        if self._client is None:
            raise PermanentError("the espocrm connector is not open")
        return self._client

    async def open(self) -> None:
        if self._client is None:
            self._client = EspoClient(self.config, self.tenant, self.context.http)
        await super().open()

    def declared_lead_schema(self) -> LeadSchema:
        """EspoCRM's shipped Lead vocabulary (with the tenant's synonyms): static, so
        ``maxcore check`` validates lead_defaults against it."""
        return self._declared

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def health(self) -> Health:
        """Reachable, key accepted, the tenant and custom fields on Lead, the Role's rights."""
        try:
            settings = await self.client.request("GET", "/Settings", auth=False)
            version = settings.json().get("version", "?")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return Health.down(f"EspoCRM unreachable at {self.config.url}: {exc} — fix: check crm.url "
                               "(the site URL; the container listens on 80) and that EspoCRM runs")
        try:
            answer = await self.client.request("GET", "/App/user", expect=(401,))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return Health.down(str(exc))
        if answer.status_code == 401:
            keys = "crm.api_key and crm.secret_key" if self.config.auth == "hmac" else "crm.api_key"
            return Health.down(f"EspoCRM rejected the API key (401) — fix: set {keys} to those of an "
                               "active API user (Administration › API Users)")
        fields = await self._lead_fields_health()
        if fields is not None:
            return fields
        me = answer.json()
        table = (me.get("acl") or {}).get("table") or {}
        lead_create = (table.get("Lead") or {}).get("create") if isinstance(table.get("Lead"), dict) else None
        if lead_create not in ("yes", True):
            return Health.degraded("the API user's Role cannot create Leads — fix: grant Lead create/read/"
                                   "edit in that Role (Administration › Roles)")
        missing = [e for e in self.entities if e not in table]
        if missing:
            return Health.degraded(f"no access to {', '.join(missing)} (role, or controller) — "
                                   f"fix: {REBUILD_HINT}, and grant them in the API user's Role")
        return Health.ok(f"EspoCRM {version} at {self.config.url}, Lead has {self.config.tenant_field} "
                         "and the custom fields")

    async def _lead_fields_health(self) -> Health | None:
        """Ask for one of our leads, filtering on every custom attribute the plugin writes.

        EspoCRM refuses a where item on an attribute the Lead entity lacks (400 "Not existing
        attribute 'x' in where."), so this read proves the fields exist (metadata and
        rebuild) without writing anything; ``isNull OR isNotNull`` keeps every row.
        """
        where: list[dict[str, Any]] = [self._tenant_where]
        where += [{"type": "or", "value": [{"type": "isNull", "attribute": name},
                                           {"type": "isNotNull", "attribute": name}]}
                  for name in LEAD_CUSTOM_ATTRIBUTES]
        params = [("maxSize", "1"), ("select", "id"), *encode_where(where)]
        try:
            response = await self.client.request("GET", "/Lead", params=params, expect=(400,))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return Health.down(f"cannot list Leads: {exc}")
        if response.status_code != 400:
            return None
        reason = response.headers.get("X-Status-Reason", "") or "bad request"
        named = _MISSING_ATTRIBUTE_RE.search(reason)
        if named is None:
            return Health.down(f"EspoCRM refused to list Leads (400 {reason})")
        field = named.group(1)
        if field == self.config.tenant_field:
            return Health.down(f"Lead has no {field} field (400 {reason}): no lead can be written for "
                               f"this tenant — fix: {REBUILD_HINT}")
        return Health.degraded(f"Lead has no custom field {field} (400 {reason}): the customization is "
                               f"incomplete or not rebuilt — fix: {REBUILD_HINT}")

    # -- mapping ---------------------------------------------------------------------------
    def _phone_out(self, e164: str) -> str:
        if self.config.phone_international:
            return e164
        number = phonenumbers.parse(e164, self.config.phone_region)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)

    def _phone_in(self, stored: str | None) -> str | None:
        if not stored:
            return None
        try:
            return normalise_phone(stored, self.config.phone_region)
        except ToolError:
            return stored

    def _normalise(self, lead: Lead) -> Lead:
        """Exact option strings, E.164 phone, lower-case e-mail, no ``<>=`` in names."""
        values = {key: getattr(lead, key) for key in _IDENTITY_ATTRIBUTES}
        if values["phone"]:
            values["phone"] = normalise_phone(values["phone"], self.config.phone_region)
        if values["email"]:
            values["email"] = normalise_email(values["email"])
        for field in _TEXT_FIELDS:
            if values[field]:
                values[field] = strip_bad_characters(values[field]) or None
        custom = {k: v for k, v in lead.fields.items() if k in LEAD_CUSTOM_ATTRIBUTES}
        declared = self._declared.normalise({k: v for k, v in lead.fields.items() if k not in custom})
        return Lead(**values, fields={**declared, **custom}, id=lead.id)

    def _lead_payload(self, lead: Lead) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for key, attribute in _IDENTITY_ATTRIBUTES.items():
            value = getattr(lead, key)
            if value is not None:
                payload[attribute] = self._phone_out(value) if key == "phone" else value
        for key, value in lead.fields.items():
            if value is not None and (key in self._declared.names or key in LEAD_CUSTOM_ATTRIBUTES):
                payload[key] = value
        return payload

    def _to_lead(self, record: Mapping[str, Any]) -> Lead:
        values = {key: record.get(attribute) or None for key, attribute in _IDENTITY_ATTRIBUTES.items()}
        values["phone"] = self._phone_in(values["phone"])
        names = (*self._declared.names, *LEAD_CUSTOM_ATTRIBUTES)
        fields = {key: record[key] for key in names if record.get(key) not in (None, "")}
        return Lead(**values, fields=fields, id=record.get("id"))

    def _ownership(self) -> dict[str, Any]:
        owned: dict[str, Any] = {self.config.tenant_field: self.tenant}
        if self.config.assigned_user_id:
            owned["assignedUserId"] = self.config.assigned_user_id
        if self.config.teams_ids:
            owned["teamsIds"] = list(self.config.teams_ids)
        return owned

    @property
    def _tenant_where(self) -> dict[str, Any]:
        return {"type": "equals", "attribute": self.config.tenant_field, "value": self.tenant}

    def _is_ours(self, record: Mapping[str, Any]) -> bool:
        return record.get(self.config.tenant_field) == self.tenant

    async def _check_written(self, entity: str, record: Mapping[str, Any], created: bool) -> None:
        """The returned record must carry our tenant, or the customization is not active."""
        if self._is_ours(record):
            return
        if created and record.get("id"):
            # Leave no record without a tenant behind (best effort: the error matters more).
            try:
                await self.client.request("DELETE", f"/{entity}/{record['id']}", expect=(403, 404))
            except Exception as exc:  # noqa: BLE001 - the error below is the one to report
                self.client.log.warning("[ESPO_CLIENT] could not delete untenanted {}: {}", entity, exc)
        field = self.config.tenant_field
        raise PermanentError(
            f"EspoCRM did not store the {field} field on {entity}: the customization is not "
            f"active (field missing or not rebuilt); {REBUILD_HINT}"
        )

    # -- leads -----------------------------------------------------------------------------
    async def _find_one(self, attribute: str, value: str) -> dict[str, Any] | None:
        where = [self._tenant_where, {"type": "equals", "attribute": attribute, "value": value}]
        found = await self.client.list_records("Lead", where, limit=1, order_by="createdAt", order="asc")
        return found[0] if found and self._is_ours(found[0]) else None

    async def upsert_lead(self, lead: Lead, defaults: Mapping[str, Any] | None = None) -> UpsertResult:
        lead = self._normalise(lead)
        existing = None
        if lead.phone:
            existing = await self._find_one("phoneNumber", self._phone_out(lead.phone))
        if existing is None and lead.email:
            existing = await self._find_one("emailAddress", lead.email)
        if existing is not None:
            return await self._update(existing, lead)
        created = with_defaults(lead, defaults or {}, self._declared)
        payload = {**self._lead_payload(created), **self._ownership()}
        response = await self.client.request("POST", "/Lead", json=payload, expect=(409,))
        if response.status_code == 409:
            duplicates = response.json() if isinstance(response.json(), list) else []
            # The API user reads every tenant's leads: only ours may be updated.
            ours = [record for record in duplicates if isinstance(record, dict) and self._is_ours(record)]
            if ours:
                return await self._update(ours[0], lead)
            response = await self.client.request(
                "POST", "/Lead", json=payload, headers={"X-Skip-Duplicate-Check": "true"}
            )
        record = response.json()
        await self._check_written("Lead", record, created=True)
        self.client.log.info("[ESPO_CLIENT] created Lead {}", record.get("id"))
        return UpsertResult(self._to_lead(record), created=True)

    async def update_lead(self, lead_id: str, lead: Lead) -> Lead | None:
        existing = await self._read_ours(lead_id)
        if existing is None:
            return None
        return (await self._update(existing, self._normalise(lead))).lead

    async def _update(self, existing: Mapping[str, Any], lead: Lead) -> UpsertResult:
        if not self._is_ours(existing):
            raise PermanentError("refusing to update a lead of another tenant")
        # Only what changes is written: a replay of the same upsert (a crash between the
        # CRM's answer and the journal's record of it) then writes nothing at all.
        payload = {key: value for key, value in self._lead_payload(lead).items()
                   if existing.get(key) != value}
        if not payload:
            return UpsertResult(self._to_lead(existing), created=False)
        response = await self.client.request("PUT", f"/Lead/{existing['id']}", json=payload)
        record = response.json()
        await self._check_written("Lead", record, created=False)
        self.client.log.info("[ESPO_CLIENT] updated Lead {}", record.get("id"))
        return UpsertResult(self._to_lead(record), created=False)

    async def search_leads(self, query: LeadQuery) -> list[Lead]:
        where: list[dict[str, Any]] = [self._tenant_where]
        if query.phone:
            phone = normalise_phone(query.phone, self.config.phone_region)
            where.append({"type": "equals", "attribute": "phoneNumber", "value": self._phone_out(phone)})
        if query.email:
            where.append({"type": "equals", "attribute": "emailAddress", "value": query.email.strip()})
        for name, value in query.fields.items():
            if name not in self._declared.names:
                return []  # no lead has a field this CRM does not declare
            where.append({"type": "equals", "attribute": name, "value": value})
        for word in (query.text or "").split():
            where.append({"type": "or", "value": [
                {"type": "contains", "attribute": attribute, "value": word}
                for attribute in ("firstName", "lastName", "accountName", "emailAddress")
            ]})
        records = await self.client.list_records("Lead", where, limit=max(1, min(query.limit, 200)))
        return [self._to_lead(r) for r in records if self._is_ours(r)]

    async def _read_ours(self, lead_id: str) -> dict[str, Any] | None:
        # An id that is not one (CR, NUL, "?maxSize=", a path) is a lead that does not exist.
        if not is_record_id(lead_id):
            return None
        response = await self.client.request("GET", f"/Lead/{lead_id}", expect=(404,))
        if response.status_code == 404:
            return None
        record = response.json()
        return record if isinstance(record, dict) and self._is_ours(record) else None

    async def get_lead(self, lead_id: str) -> Lead | None:
        record = await self._read_ours(lead_id)
        return None if record is None else self._to_lead(record)

    async def list_leads(self, limit: int = 50, offset: int = 0) -> list[Lead]:
        records = await self.client.list_records(
            "Lead", [self._tenant_where], limit=max(0, limit), offset=max(0, offset), order="asc"
        )
        return [self._to_lead(r) for r in records if self._is_ours(r)]

    # -- other entities ----------------------------------------------------------------------
    async def create_record(self, entity: str, fields: Mapping[str, Any]) -> Record:
        if entity not in self.entities:
            raise ToolError(f"entity {entity!r} is not available; allowed: {', '.join(self.entities)}")
        tenant_field = self.config.tenant_field
        clean = {k: v for k, v in fields.items()
                 if k not in _NEVER_FROM_INPUT and k != tenant_field and k != "tenantId"
                 and not _USER_OR_TEAM_RE.search(k)}
        if isinstance(clean.get("name"), str):
            clean["name"] = strip_bad_characters(clean["name"])
        lead_id = clean.get("leadId")
        # A link to a lead is a read of that lead: it must be this tenant's.
        if lead_id is not None and (not is_record_id(lead_id) or await self.get_lead(lead_id) is None):
            raise ToolError(f"lead {lead_id!r} not found")
        response = await self.client.request("POST", f"/{entity}", json={**clean, **self._ownership()})
        record = response.json()
        await self._check_written(entity, record, created=True)
        self.client.log.info("[ESPO_CLIENT] created {} {}", entity, record.get("id"))
        stored = {k: record[k] for k in clean if k in record}
        return Record(entity=entity, id=str(record["id"]), fields=stored)
