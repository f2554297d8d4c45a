"""``maxcore serve``: hypercorn, signals (TERM/INT stop, HUP reload) and a pid file."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from loguru import logger

from .app import create_app
from .runtime import Runtime

# An idle keep-alive connection (and one still sending its request head) is closed
# after KEEP_ALIVE_S: longer than nginx's 60 s upstream keep-alive, so nginx never
# reuses a connection maxcore is closing. A connection on which nothing arrives for
# READ_TIMEOUT_S is dropped; the app bounds a whole body to BODY_TIMEOUT_S.
KEEP_ALIVE_S = 75
READ_TIMEOUT_S = 90
MAX_HEAD_BYTES = 64 * 1024
# Connections the kernel queues before they are accepted. hypercorn's default (100)
# drops the excess of a burst (many webhooks at once, a pool opening its connections):
# their clients wait a SYN retransmission or fail.
LISTEN_BACKLOG = 1024


def hypercorn_config(runtime: Runtime, bind: str) -> HypercornConfig:
    """``maxcore serve``'s hypercorn settings; ``bind`` as hypercorn reads it (``fd://N``)."""
    hc = HypercornConfig()
    hc.bind = [bind]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = KEEP_ALIVE_S
    hc.read_timeout = READ_TIMEOUT_S
    hc.graceful_timeout = runtime.config.server.shutdown_grace_s
    hc.h11_max_incomplete_size = MAX_HEAD_BYTES
    hc.backlog = LISTEN_BACKLOG
    return hc


def pid_file(runtime: Runtime) -> Path:
    """``maxcore.pid`` (the process serving HTTP: ``maxcore reload`` signals it), or
    ``maxcore-worker.pid`` for a ``--role worker`` process beside it."""
    name = "maxcore-worker.pid" if runtime.role == "worker" else "maxcore.pid"
    return runtime.loaded.data_dir / name


def bind_listener(host: str, port: int) -> tuple[str, int]:
    """Bind ``host:port`` (port 0: any free port) and return hypercorn's ``fd://`` bind and the port.

    Binding here rather than in hypercorn means the port reported is the one really held:
    no probe-then-bind race when several servers start at once.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    bound = int(sock.getsockname()[1])
    return f"fd://{sock.detach()}", bound


def freeze_loaded_objects() -> None:
    """Keep what start-up built (modules, configuration, plugins, tenants: some 80,000
    objects) out of the garbage collector's full passes. A full pass scanned them every
    time and stopped the event loop for 70-100 ms under load; with them frozen, 35 ms.
    After a reload the old configuration is released first (``gc.unfreeze``, a full
    collection), so replaced tenants do not stay in memory."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def run_server(runtime: Runtime, config_dir: Path, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; reload the configuration on SIGHUP.

    A ``--role worker`` runtime serves no HTTP: it processes the inbox the web process
    fills, until it is told to stop.
    """
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        if not stop.is_set():
            logger.info("{} received: no new messages accepted, finishing in-flight work", signame)
            runtime.inbox.accepting = False
            stop.set()

    def request_reload() -> None:
        async def reload() -> None:
            problems = await runtime.reload(config_dir)
            for problem in problems:
                logger.error("reload refused: {}", problem)
            freeze_loaded_objects()

        reloads.add(task := loop.create_task(reload()))
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, request_reload)

    if runtime.role == "worker":
        await run_worker(runtime, stop)
        return
    app = create_app(runtime, manage_lifecycle=False)
    bind, port = bind_listener(host, port)
    hc = hypercorn_config(runtime, bind)
    await runtime.start()
    freeze_loaded_objects()
    pid_path = pid_file(runtime)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(str(os.getpid()))
    # The port really bound (``--port 0`` picks one), for scripts and tests at any log level.
    port_path = pid_path.with_name("maxcore.port")
    port_path.write_text(f"{port}\n")
    logger.info("listening on http://{}:{} (health: /api/health, chat: /chat)", host, port)

    async def shutdown_trigger() -> None:
        await stop.wait()
        # Drain the inbox while the HTTP server still answers 503 to new webhooks.
        await runtime.stop()

    try:
        await serve(app, hc, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]
    finally:
        if runtime.started:
            await runtime.stop()
        pid_path.unlink(missing_ok=True)
        port_path.unlink(missing_ok=True)
        logger.info("stopped")


async def run_worker(runtime: Runtime, stop: asyncio.Event) -> None:
    """The worker role: the inbox's workers and the pipeline, no HTTP listener."""
    await runtime.start()
    freeze_loaded_objects()
    pid_path = pid_file(runtime)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(str(os.getpid()))
    logger.info("worker processing the inbox {} (no HTTP: the web process takes the webhooks)",
                getattr(runtime.inbox, "path", ""))
    try:
        await stop.wait()
    finally:
        await runtime.stop()
        pid_path.unlink(missing_ok=True)
        logger.info("stopped")
