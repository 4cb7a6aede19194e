"""Build the project's image from the unmodified Dockerfile, and the images a node needs.

`make image` (webhook-operator cluster image) builds `Dockerfile` with `docker build` or
`podman build` where one exists, else with buildah. When the Dockerfile's base cannot be
pulled (no registry is reachable on the machines this project is developed and tested
on), a stand-in is made locally: Debian bookworm by debootstrap with its python3 (3.11,
as python:3.11-slim) and pip, tagged with the name the Dockerfile's FROM asks for, so the
file users build stays the file tested. Results are docker-archive tarballs cached
outside the tree under a key derived from the sources that go into them, like the control
plane binary: a second build on the same sources is a file lookup.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from webhook_operator.devcluster.binaries import (
    BinaryError,
    Progress,
    _build_lock,
    _go,
    _run_build,
    cache_dir,
    controlplane_source_dir,
)

IMAGE_REPOSITORY = "localhost/webhook-operator/webhook-operator"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
_DEBIAN_SUITE = "bookworm"
_DEBIAN_MIRROR = os.environ.get("WEBHOOK_OPERATOR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def repo_root() -> Path:
    return controlplane_source_dir().parent.parent


def image_sources(root: Path) -> list[Path]:
    """What goes into the image: the Dockerfile and what .dockerignore lets through."""
    files = [root / "Dockerfile", root / "pyproject.toml", root / "README.md"]
    for path in sorted((root / "operator").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
            files.append(path)
    return files


def image_key(root: Path) -> str:
    digest = hashlib.sha256()
    for path in image_sources(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_tag(root: Path | None = None) -> str:
    return f"dev-{image_key(root or repo_root())}"


def archive_image(archive: Path) -> str:
    """The image name inside an archive from build_image (its folder carries the tag)."""
    return f"{IMAGE_REPOSITORY}:{archive.parent.name.removeprefix('image-')}"


def _engine() -> list[str]:
    chosen = os.environ.get("WEBHOOK_OPERATOR_IMAGE_BUILDER")
    names = (chosen,) if chosen else ("docker", "podman")
    for name in names:
        found = shutil.which(name)
        # A docker CLI without a reachable daemon cannot build: fall through to buildah.
        if found and name != "buildah" and _answers(found):
            return [found]
    found = shutil.which("buildah")
    if found:
        return [found]
    raise BinaryError(
        "building the image needs docker, podman or buildah (`bash .ci/install-node` "
        "installs buildah)"
    )


def _answers(engine: str) -> bool:
    try:
        result = subprocess.run([engine, "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _buildah_env() -> dict[str, str]:
    # crun cannot run on a cgroup v1 hybrid host; vfs needs no kernel overlay support.
    return {**os.environ, "BUILDAH_RUNTIME": "/usr/sbin/runc", "STORAGE_DRIVER": "vfs"}


def _has_image(engine: list[str], name: str, env: dict[str, str]) -> bool:
    probe = [*engine, "inspect", "--type", "image", name]
    if Path(engine[0]).name != "buildah":
        probe = [*engine, "image", "inspect", name]
    result = subprocess.run(probe, env=env, capture_output=True)
    return result.returncode == 0


def _pull(engine: list[str], name: str, env: dict[str, str]) -> bool:
    result = subprocess.run([*engine, "pull", name], env=env, capture_output=True)
    return result.returncode == 0


def ensure_base(progress: Progress | None = None) -> None:
    """Make the Dockerfile's FROM image available to buildah: pulled, or made locally."""
    engine = _engine()
    if Path(engine[0]).name != "buildah":
        return  # docker and podman pull the base themselves, as a user's build does
    env = _buildah_env()
    if _has_image(engine, BASE_IMAGE, env):
        return
    if os.environ.get("WEBHOOK_OPERATOR_PULL_BASE") and _pull(engine, BASE_IMAGE, env):
        return
    with _build_lock("image-base"):
        if _has_image(engine, BASE_IMAGE, env):
            return
        if progress:
            progress(f"making {BASE_IMAGE} locally with debootstrap (once; about 4 minutes)")
        _debootstrap_base(engine, env)


def _debootstrap_base(engine: list[str], env: dict[str, str]) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise BinaryError("debootstrap is needed to make the base image: bash .ci/install-node")
    work = cache_dir() / "image-base"
    rootfs = work / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        _run_build(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-pip,ca-certificates",
                _DEBIAN_SUITE,
                str(rootfs),
                _DEBIAN_MIRROR,
            ],
            cwd=work,
            env=env,
            what="the base image's root filesystem (debootstrap)",
        )
    # python:3.11-slim's pip installs into its own prefix; Debian's python3 refuses
    # `pip install` system-wide (PEP 668) unless the marker is gone. An image is the
    # environment, so it goes, as it does in the official image.
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*.deb"):
            entry.unlink()
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    container = subprocess.run(
        [*engine, "from", "scratch"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        _run_build([*engine, "add", container, str(archive), "/"], work, env, "the base image")
        _run_build(
            [*engine, "config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container],
            work,
            env,
            "the base image",
        )
        _run_build([*engine, "commit", container, BASE_IMAGE], work, env, "the base image")
    finally:
        subprocess.run([*engine, "rm", container], env=env, capture_output=True)
    archive.unlink()


def build_image(progress: Progress | None = None, root: Path | None = None) -> Path:
    """The project's image as a docker-archive (cached by source hash); builds when absent."""
    root = root or repo_root()
    tag = image_tag(root)
    name = f"{IMAGE_REPOSITORY}:{tag}"
    target = cache_dir() / f"image-{tag}" / "image.tar"
    if target.exists():
        return target
    with _build_lock("image"):
        if target.exists():
            return target
        ensure_base(progress)
        engine = _engine()
        buildah = Path(engine[0]).name == "buildah"
        env = _buildah_env() if buildah else dict(os.environ)
        if progress:
            progress(f"building {name} from {root / 'Dockerfile'} (about 3 minutes)")
        cmd = [*engine, "build", "-t", name, "-f", str(root / "Dockerfile")]
        if buildah:
            # The base was made locally: never ask a registry for it. pip inside RUN checks
            # TLS against the host's CA bundle (the base's own may be older).
            cmd += ["--pull=never", "--isolation=chroot", "--network=host"]
            if _HOST_CA_BUNDLE.exists():
                cmd += ["-v", f"{_HOST_CA_BUNDLE}:{_HOST_CA_BUNDLE}:ro"]
        _run_build([*cmd, str(root)], root, env, f"the image ({' '.join(cmd)})")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        if buildah:
            push = [*engine, "push", name, f"docker-archive:{partial}:{name}"]
        else:
            push = [*engine, "save", "-o", str(partial), name]
        _run_build(push, root, env, "the image archive")
        partial.rename(target)
        # The archive is what is used from now on: the engine's copy (a full copy per
        # layer with vfs) and the archives of older sources would only fill the disk.
        subprocess.run([*engine, "rmi", name], env=env, capture_output=True)
        for old in cache_dir().glob("image-dev-*"):
            if old != target.parent:
                shutil.rmtree(old, ignore_errors=True)
    return target


def _kubernetes_module_dir() -> Path:
    src = controlplane_source_dir()
    result = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=src,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not result.stdout.strip():
        subprocess.run([_go(), "mod", "download", "k8s.io/kubernetes"], cwd=src, check=False)
        result = subprocess.run(
            [_go(), "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
            cwd=src,
            capture_output=True,
            text=True,
            check=True,
        )
    return Path(result.stdout.strip())


def pause_archive(name: str) -> Path:
    """The Pod sandbox image as a docker-archive: kubernetes' pause.c, static, one layer.

    No registry is reachable, so the image kubelet puts under every Pod is made here.
    """
    target = cache_dir() / "pause" / "pause.tar"
    if target.exists():
        return target
    with _build_lock("pause"):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        source = _kubernetes_module_dir() / "build" / "pause" / "linux" / "pause.c"
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            _run_build(
                ["gcc", "-Os", "-static", "-o", str(binary), str(source)],
                Path(tmp),
                dict(os.environ),
                "the pause program",
            )
            layer = _single_file_layer("pause", binary.read_bytes())
        partial = target.with_suffix(".partial")
        _write_docker_archive(partial, name, layer, entrypoint=["/pause"])
        partial.rename(target)
    return target


def _single_file_layer(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_docker_archive(path: Path, name: str, layer: bytes, entrypoint: list[str]) -> None:
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        }
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [name], "Layers": [f"{layer_id}/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for member, data in (
            (f"{layer_id}/layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
