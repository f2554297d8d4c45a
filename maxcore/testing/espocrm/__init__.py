"""An EspoCRM 8.3 REST API emulator for tests (as EspoCRM 8.3.6's source defines it).

It reads the customization in ``deploy/espocrm/custom`` (fields, enum options with
``__APPEND__``, which custom entities have a Controller) so the customization files
and the ``espocrm`` plugin are tested together.
"""

from __future__ import annotations

from .app import EspoEmulator, default_custom_dir
from .auth import ApiUser, hmac_header
from .metadata import Metadata, merge

__all__ = ["ApiUser", "EspoEmulator", "Metadata", "default_custom_dir", "hmac_header", "merge"]
