"""The ``hubspot`` CRM connector: one tenant's leads as HubSpot contacts (CRM v3).

Vocabulary: at ``open()`` the connector reads the definition of each configured
contact property (``GET /crm/v3/properties/contacts/{name}``); enumerations become the
declaration's choices with HubSpot's own values and labels. Tenancy: every contact
written carries ``tenant_property``, every search ANDs it in, and a contact read by id
that belongs to another tenant is "not found". HubSpot keeps one contact per e-mail
per account (``unique_emails``): a person another tenant already holds is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
from loguru import logger

from maxcore.connectors import ConnectorContext, CRMBase, LeadQuery
from maxcore.errors import PermanentError, RetryableError, ToolError
from maxcore.leads import normalise_phone, with_defaults
from maxcore.types import Health, Lead, Record, UpsertResult
from maxcore.vocabulary import Choice, FieldType, LeadField, LeadSchema

from .config import HubSpotConfig

_IDENTITY = {"first_name": "firstname", "last_name": "lastname", "phone": "phone", "email": "email",
             "company": "company"}
_TYPES = {"string": FieldType.TEXT, "number": FieldType.NUMBER, "bool": FieldType.BOOLEAN,
          "date": FieldType.DATE, "datetime": FieldType.DATE, "enumeration": FieldType.ENUM}
_EXISTING_RE = re.compile(r"Existing ID: (\d+)")
_ID_RE = re.compile(r"^\d{1,20}$")  # HubSpot record ids are numbers
MAX_PAGE = 200


def field_of(definition: Mapping[str, Any]) -> LeadField:
    """A HubSpot property definition as a declared lead field."""
    kind = _TYPES.get(str(definition.get("type")), FieldType.TEXT)
    options = [o for o in definition.get("options") or [] if not o.get("hidden")]
    if kind is FieldType.BOOLEAN or (kind is FieldType.ENUM and not options):
        kind, options = (FieldType.BOOLEAN if kind is FieldType.BOOLEAN else FieldType.TEXT), []
    choices = tuple(Choice(str(o["value"]), str(o.get("label") or o["value"])) for o in options)
    return LeadField(str(definition["name"]), kind, str(definition.get("label") or ""),
                     str(definition.get("description") or ""), choices=choices)


class HubSpotCRM(CRMBase):
    name = "hubspot"
    Config = HubSpotConfig
    unique_emails = True

    def __init__(self, config: HubSpotConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        context.add_secret(config.access_token)
        self.entities = ()
        self._http: httpx.AsyncClient | None = None
        self.log = logger.bind(tenant=context.tenant)

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.config.base_url.rstrip("/"), timeout=self.config.timeout_s,
                headers={"Authorization": f"Bearer {self.config.access_token}",
                         "User-Agent": "maxcore-hubspot"})
        await super().open()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def read_lead_schema(self) -> LeadSchema:
        fields = []
        for name in self.config.properties:
            response = await self._request("GET", f"/crm/v3/properties/contacts/{name}", expect=(404,))
            if response.status_code == 404:
                raise PermanentError(f"HubSpot has no contact property {name!r}: fix crm.properties")
            fields.append(field_of(response.json()))
        try:
            return LeadSchema(tuple(fields)).with_synonyms(self.config.synonyms)
        except ValueError as exc:
            raise PermanentError(f"crm.synonyms.{exc}") from None

    async def health(self) -> Health:
        try:
            response = await self._request(
                "GET", f"/crm/v3/properties/contacts/{self.config.tenant_property}", expect=(404,))
        except (PermanentError, RetryableError) as exc:
            return Health.down(str(exc))
        if response.status_code == 404:
            return Health.down(f"the contact property {self.config.tenant_property!r} is missing — fix: "
                               "create it (single-line text) in Settings › Properties")
        return Health.ok(f"HubSpot at {self.config.base_url}, tenant property {self.config.tenant_property}")

    # -- HTTP ------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                       expect: tuple[int, ...] = ()) -> httpx.Response:
        if self._http is None:
            raise PermanentError("the hubspot connector is not open")
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException:
            raise RetryableError(f"HubSpot did not answer within {self.config.timeout_s:g}s") from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"cannot reach HubSpot at {self.config.base_url} ({type(exc).__name__})") from None
        self.log.debug("[HUBSPOT] {} {} -> {}", method, path, response.status_code)
        if response.status_code < 300 or response.status_code in expect:
            return response
        raise self._error(method, path, response)

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        status = response.status_code
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:200]
        if status == 401:
            return PermanentError("HubSpot rejected the access token (401): check crm.access_token "
                                  "(a private app token with the contacts scopes)")
        if status == 429 or status >= 500:
            header = response.headers.get("Retry-After", "")
            try:
                retry_after: float | None = float(header)
            except ValueError:
                retry_after = None
            return RetryableError(f"HubSpot answered {status} on {method} {path}", retry_after=retry_after)
        if status == 400:
            return ToolError(f"HubSpot refused the values: {message}")
        return PermanentError(f"HubSpot answered {status} on {method} {path}: {message}")

    # -- mapping ---------------------------------------------------------------------------
    def _properties_out(self, lead: Lead) -> dict[str, Any]:
        out = {attribute: getattr(lead, key) for key, attribute in _IDENTITY.items()
               if getattr(lead, key) is not None}
        out.update({k: (str(v).lower() if isinstance(v, bool) else v)
                    for k, v in lead.fields.items() if v is not None})
        return out

    def _to_lead(self, record: Mapping[str, Any], schema: LeadSchema) -> Lead:
        props = record.get("properties") or {}
        values = {key: props.get(attribute) or None for key, attribute in _IDENTITY.items()}
        if values["phone"]:
            try:
                values["phone"] = normalise_phone(values["phone"], self.config.phone_region)
            except ToolError:
                pass
        fields = {}
        for field in schema.fields:
            value = props.get(field.name)
            if value in (None, ""):
                continue
            if field.type is FieldType.BOOLEAN:
                fields[field.name] = str(value).lower() == "true"  # HubSpot sends "true"/"false"
            elif field.type is FieldType.NUMBER:
                fields[field.name] = field.normalise(value)
            else:
                fields[field.name] = value
        return Lead(**values, fields=fields, id=str(record.get("id")))

    def _wanted(self, schema: LeadSchema) -> list[str]:
        return [*_IDENTITY.values(), *schema.names, self.config.tenant_property]

    def _is_ours(self, record: Mapping[str, Any]) -> bool:
        return (record.get("properties") or {}).get(self.config.tenant_property) == self.tenant

    @property
    def _tenant_filter(self) -> dict[str, Any]:
        return {"propertyName": self.config.tenant_property, "operator": "EQ", "value": self.tenant}

    # -- leads -----------------------------------------------------------------------------
    async def _search(self, filters: list[dict[str, Any]], *, query: str | None = None, limit: int,
                      offset: int = 0, descending: bool = False) -> list[dict[str, Any]]:
        schema = await self.lead_schema()
        found: list[dict[str, Any]] = []
        after = offset
        while len(found) < limit:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [self._tenant_filter, *filters]}],
                "properties": self._wanted(schema), "limit": min(MAX_PAGE, limit - len(found)),
                "after": str(after), "sorts": [{"propertyName": "createdate",
                                                 "direction": "DESCENDING" if descending else "ASCENDING"}],
            }
            if query:
                body["query"] = query
            page = (await self._request("POST", "/crm/v3/objects/contacts/search", json=body)).json()
            results = page.get("results") or []
            found.extend(r for r in results if self._is_ours(r))
            following = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not following or not results:
                break
            after = int(following)
        return found

    async def _read_ours(self, lead_id: str) -> dict[str, Any] | None:
        if not isinstance(lead_id, str) or not _ID_RE.match(lead_id):
            return None
        schema = await self.lead_schema()
        response = await self._request("GET", f"/crm/v3/objects/contacts/{lead_id}",
                                       params={"properties": ",".join(self._wanted(schema))}, expect=(404,))
        if response.status_code == 404:
            return None
        record = response.json()
        return record if self._is_ours(record) else None

    async def upsert_lead(self, lead: Lead, defaults: Mapping[str, Any] | None = None) -> UpsertResult:
        schema = await self.lead_schema()
        lead = Lead(**{k: getattr(lead, k) for k in _IDENTITY}, fields=schema.normalise(lead.fields))
        existing = None
        for attribute, value in (("phone", lead.phone), ("email", lead.email)):
            if value and existing is None:
                matches = await self._search([{"propertyName": attribute, "operator": "EQ", "value": value}],
                                             limit=1)
                existing = matches[0] if matches else None
        if existing is not None:
            return UpsertResult(await self._patch(existing["id"], lead, schema), created=False)
        created = with_defaults(lead, defaults or {}, schema)
        body = {"properties": {**self._properties_out(created), self.config.tenant_property: self.tenant}}
        response = await self._request("POST", "/crm/v3/objects/contacts", json=body, expect=(409,))
        if response.status_code == 409:
            # The e-mail is taken in the account. Ours (search not indexed yet): update it.
            # Another tenant's: refused, and nothing about it is shown.
            match = _EXISTING_RE.search(str(response.json().get("message", "")))
            ours = await self._read_ours(match.group(1)) if match else None
            if ours is None:
                raise ToolError(f"the e-mail address {lead.email} is already used by a contact this "
                                "assistant cannot access; ask for another address")
            return UpsertResult(await self._patch(ours["id"], lead, schema), created=False)
        record = response.json()
        self.log.info("[HUBSPOT] created contact {}", record.get("id"))
        stored = await self._read_ours(str(record.get("id")))
        return UpsertResult(self._to_lead(stored or record, schema), created=True)

    async def _patch(self, contact_id: str, lead: Lead, schema: LeadSchema) -> Lead:
        properties = self._properties_out(lead)
        if properties:
            response = await self._request("PATCH", f"/crm/v3/objects/contacts/{contact_id}",
                                           json={"properties": properties}, expect=(409,))
            if response.status_code == 409:
                raise ToolError(f"the e-mail address {lead.email} is already used by another contact")
            self.log.info("[HUBSPOT] updated contact {}", contact_id)
        stored = await self._read_ours(contact_id)
        if stored is None:
            raise PermanentError(f"contact {contact_id} vanished after its update")
        return self._to_lead(stored, schema)

    async def update_lead(self, lead_id: str, lead: Lead) -> Lead | None:
        if await self._read_ours(lead_id) is None:
            return None
        schema = await self.lead_schema()
        normalised = Lead(**{k: getattr(lead, k) for k in _IDENTITY}, fields=schema.normalise(lead.fields))
        return await self._patch(lead_id, normalised, schema)

    async def search_leads(self, query: LeadQuery) -> list[Lead]:
        schema = await self.lead_schema()
        filters = [{"propertyName": attribute, "operator": "EQ", "value": value}
                   for attribute, value in (("phone", query.phone), ("email", query.email)) if value]
        for name, value in query.fields.items():
            if name not in schema.names:
                return []
            filters.append({"propertyName": name, "operator": "EQ", "value": str(value)})
        records = await self._search(filters, query=query.text, limit=max(1, min(query.limit, 200)),
                                     descending=True)
        return [self._to_lead(r, schema) for r in records]

    async def get_lead(self, lead_id: str) -> Lead | None:
        record = await self._read_ours(lead_id)
        return None if record is None else self._to_lead(record, await self.lead_schema())

    async def list_leads(self, limit: int = 50, offset: int = 0) -> list[Lead]:
        schema = await self.lead_schema()
        records = await self._search([], limit=max(0, limit), offset=max(0, offset))
        return [self._to_lead(r, schema) for r in records]

    async def create_record(self, entity: str, fields: Mapping[str, Any]) -> Record:
        raise ToolError(f"entity {entity!r} is not available; this CRM offers none")
