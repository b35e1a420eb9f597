"""Container image tarballs written directly, without a registry, a Dockerfile or a daemon.

The format is `docker save`'s (manifest.json + config + one tar per layer), which both
`docker load` and containerd's `ctr images import` read: kind's node image builder imports the
control-plane images the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Fixed timestamp: the same inputs give the same layer digests.
EPOCH = 0


@dataclass
class Layer:
    """One image layer being written: files, folders and symlinks with root ownership."""

    path: Path
    _tar: tarfile.TarFile = field(init=False, repr=False)
    _dirs: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        # Open for the layer's lifetime; `close()` (or leaving a `with` block) ends it.
        self._tar = tarfile.open(self.path, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def __enter__(self) -> Layer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.strip("/"))
        info.type = kind
        info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = EPOCH
        return info

    def directory(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix and prefix not in self._dirs:
                self._dirs.add(prefix)
                self._tar.addfile(self._info(prefix, tarfile.DIRTYPE, mode))

    def _parent(self, name: str) -> None:
        parent = name.strip("/").rsplit("/", 1)[0] if "/" in name.strip("/") else ""
        if parent:
            self.directory(parent)

    def data(self, name: str, content: bytes, mode: int = 0o644) -> None:
        self._parent(name)
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(content)
        self._tar.addfile(info, io.BytesIO(content))

    def file(self, name: str, source: Path, mode: int = 0o755) -> None:
        self._parent(name)
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = source.stat().st_size
        with open(source, "rb") as stream:
            self._tar.addfile(info, stream)

    def symlink(self, name: str, target: str) -> None:
        self._parent(name)
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)

    def close(self) -> None:
        self._tar.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(
        default_factory=lambda: [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    )
    user: str = ""
    workdir: str = "/"
    stop_signal: str | None = None


def write_image(target: Path, tags: list[str], layers: list[Path], config: ImageConfig) -> None:
    """Write `docker save`-format tarball `target` of the layer tars `layers` (bottom first)."""
    diff_ids = [f"sha256:{_sha256(layer)}" for layer in layers]
    container_config: dict[str, object] = {
        "Env": config.env,
        "WorkingDir": config.workdir,
        "User": config.user,
    }
    if config.entrypoint is not None:
        container_config["Entrypoint"] = config.entrypoint
    if config.cmd is not None:
        container_config["Cmd"] = config.cmd
    if config.stop_signal:
        container_config["StopSignal"] = config.stop_signal
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "fluidos-sensors"}]
            * len(layers),
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(image_config).hexdigest()}.json"
    layer_names = [f"{diff_id.split(':', 1)[1]}/layer.tar" for diff_id in diff_ids]
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]
    ).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".partial", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        with tarfile.open(partial, "w") as out:
            for name, layer in zip(layer_names, layers, strict=True):
                out.add(layer, arcname=name)
            for name, content in ((config_name, image_config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(content), EPOCH
                out.addfile(info, io.BytesIO(content))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
