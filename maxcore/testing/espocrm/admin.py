"""The admin side of the EspoCRM 8.3 emulator: Roles and API users, as an admin creates
them in Administration › Roles and › API Users, through the REST API.

8.3 facts (``Classes/RecordHooks/User/BeforeCreate.php``, ``Classes/Record/User/OutputFilter.php``):
an admin's ``POST User`` with ``type: api`` and ``authMethod: ApiKey`` gets an
``apiKey`` generated server-side and returned (to admins only); a taken ``userName`` is
409 ``userNameExists``. An API user may do only what its Roles grant: a scope missing
from the role data is no access; ``"Webhook": true`` is the boolean-ACL scope.
Admins authenticate with ``Espo-Authorization`` or ``Authorization: Basic`` (user:password).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .auth import ApiUser
from .store import new_id

ACTIONS = ("create", "read", "edit", "delete")


@attrs.frozen
class Admin:
    user_name: str
    password: str

    def matches(self, headers: dict[str, str]) -> bool | None:
        """True/False for offered credentials, None when none were offered."""
        value = headers.get("espo-authorization")
        if value is None:
            auth = headers.get("authorization", "")
            if not auth.lower().startswith("basic "):
                return None
            value = auth[6:]
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.user_name) and hmac.compare_digest(password, self.password)


def granted_by(role_data: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The (scope, action) pairs a role's ``data`` grants."""
    granted: set[tuple[str, str]] = set()
    for scope, levels in role_data.items():
        if levels is True:
            granted.update((scope, action) for action in ACTIONS)
        elif isinstance(levels, dict):
            granted.update((scope, action) for action, level in levels.items()
                           if action in ACTIONS and level not in ("no", None, False))
    return frozenset(granted)


class Directory:
    """Roles and admin-created API users, kept in a JSON file when one is given (the real
    EspoCRM keeps them in its database: they survive a restart and come back with a restore)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.roles: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            self.roles, self.users = saved["roles"], saved["users"]

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"roles": self.roles, "users": self.users}))

    def api_users(self) -> Iterable[ApiUser]:
        for user in self.users.values():
            data: dict[str, Any] = {}
            for role_id in user.get("rolesIds") or []:
                data.update(self.roles.get(role_id, {}).get("data") or {})
            yield ApiUser(api_key=user["apiKey"], id=user["id"], user_name=user["userName"],
                          granted=granted_by(data))

    def create_role(self, body: dict[str, Any]) -> dict[str, Any]:
        role: dict[str, Any] = {
            "id": new_id(), "name": str(body.get("name") or ""), "data": body.get("data") or {},
            "fieldData": body.get("fieldData") or {},
            "assignmentPermission": body.get("assignmentPermission", "not-set"),
        }
        self.roles[role["id"]] = role
        self._save()
        return role

    def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        """The new API user with its generated key; ValueError(reason) when refused."""
        name = str(body.get("userName") or "").strip()
        if not name:
            raise ValueError("Field validation failure; entityType: User, field: userName, type: required.")
        if any(u["userName"] == name for u in self.users.values()):
            raise KeyError("userNameExists")
        if body.get("type") != "api" or body.get("authMethod") != "ApiKey":
            raise ValueError("this emulator creates API users (type api, authMethod ApiKey) only")
        user: dict[str, Any] = {"id": new_id(), "userName": name, "type": "api", "authMethod": "ApiKey",
                "isActive": bool(body.get("isActive", True)), "rolesIds": list(body.get("rolesIds") or []),
                "apiKey": secrets.token_hex(16)}
        self.users[user["id"]] = user
        self._save()
        return user

    def find(self, kind: str, attribute: str, value: str) -> list[dict[str, Any]]:
        table = self.roles if kind == "Role" else self.users
        return [r for r in table.values() if str(r.get(attribute)) == value]
