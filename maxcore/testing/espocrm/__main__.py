"""Serve the EspoCRM emulator in the foreground (the stand-in EspoCRM container of the
deploy tests): ``python -m maxcore.testing.espocrm --port 80 --custom-dir DIR``.

The admin account comes from ESPOCRM_ADMIN_USERNAME / ESPOCRM_ADMIN_PASSWORD, as the
real image's install reads them; records, roles and users live in ``--state-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

from .admin import Admin
from .app import EspoEmulator


async def _serve(emulator: EspoEmulator, host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = "-"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(emulator.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--custom-dir", type=Path, required=True,
                        help="the folder holding Espo/Custom (EspoCRM's custom/)")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    admin = Admin(os.environ.get("ESPOCRM_ADMIN_USERNAME", "admin"),
                  os.environ.get("ESPOCRM_ADMIN_PASSWORD", "password"))
    emulator = EspoEmulator(args.custom_dir, admin=admin, state_dir=args.state_dir)
    asyncio.run(_serve(emulator, args.host, args.port))


if __name__ == "__main__":
    main()
