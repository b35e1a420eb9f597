"""KIND mode pieces that need no Docker: image tarballs, runtime wrappers, kind configs."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from testbed.kind import archive, cluster, docker, nodeimage
from testbed.kind.cluster import CONFIG_DIR
from testbed.kind.steps import StepFailed


def test_image_tarball_is_docker_save_format(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"#!/bin/sh\necho hi\n")
    with archive.Layer(tmp_path / "layer.tar") as layer:
        layer.file("/usr/local/bin/tool", binary)
        layer.symlink("/opt/cni/bin", "/usr/lib/cni")
    target = tmp_path / "image.tar"
    config = archive.ImageConfig(entrypoint=["/usr/local/bin/tool"])
    archive.write_image(target, ["registry.k8s.io/tool:v1"], [layer.path], config)

    with tarfile.open(target) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["registry.k8s.io/tool:v1"]
        image_config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        assert image_config["config"]["Entrypoint"] == ["/usr/local/bin/tool"]
        (layer_name,) = manifest[0]["Layers"]
        digest = layer_name.split("/")[0]
        assert image_config["rootfs"]["diff_ids"] == [f"sha256:{digest}"]
        with tarfile.open(fileobj=tar.extractfile(layer_name)) as inner:
            members = {m.name: m for m in inner.getmembers()}
    assert members["usr/local/bin/tool"].mode == 0o755
    assert members["usr/local/bin/tool"].uid == 0
    assert members["opt/cni/bin"].issym() and members["opt/cni/bin"].linkname == "/usr/lib/cni"
    assert members["usr/local/bin"].isdir()


def test_same_inputs_give_the_same_image(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        with archive.Layer(tmp_path / f"{name}.tar") as layer:
            layer.data("/etc/x", b"x")
        target = tmp_path / f"{name}-image.tar"
        archive.write_image(target, ["x:1"], [layer.path], archive.ImageConfig())
        with tarfile.open(target) as tar:
            digests.append(json.load(tar.extractfile("manifest.json"))[0]["Config"])  # type: ignore[arg-type]
    assert digests[0] == digests[1]


def _fake_runc(tmp_path: Path) -> Path:
    """A runc that records its arguments."""
    runc = tmp_path / "runc"
    runc.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n')
    runc.chmod(0o755)
    return runc


def test_engine_wrapper_drops_missing_capabilities(tmp_path: Path) -> None:
    runc = _fake_runc(tmp_path)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(
        docker._WRAPPER.format(python="/usr/bin/python3", drop=["CAP_SYS_RESOURCE"], runc=str(runc))
    )
    wrapper.chmod(0o755)
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {"process": {"capabilities": {"bounding": caps, "effective": caps}}}
    (bundle / "config.json").write_text(json.dumps(spec))
    subprocess.run([wrapper, "--root", "/x", "create", "--bundle", bundle, "id"], check=True)
    written = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert written == {
        "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "effective": written["effective"],
    }
    assert "CAP_SYS_RESOURCE" not in written["effective"]
    assert (tmp_path / "args").read_text().split()[:3] == ["--root", "/x", "create"]

    process = tmp_path / "process.json"
    process.write_text(json.dumps({"capabilities": {"permitted": caps}}))
    subprocess.run([wrapper, "exec", "--process", process, "id"], check=True)
    assert json.loads(process.read_text())["capabilities"]["permitted"] == [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
    ]


def test_node_runc_wrapper_raises_negative_oom_score(tmp_path: Path) -> None:
    runc = _fake_runc(tmp_path)
    wrapper = tmp_path / "node-runc"
    wrapper.write_text(nodeimage.NODE_RUNC_WRAPPER.replace("/usr/sbin/runc", str(runc)))
    wrapper.chmod(0o755)
    for adj, expected in ((-998, 0), (1000, 1000)):
        bundle = tmp_path / f"bundle{adj}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps({"process": {"oomScoreAdj": adj}}))
        subprocess.run([wrapper, "--log", "x", "create", "--bundle", bundle, "sandbox"], check=True)
        assert (
            json.loads((bundle / "config.json").read_text())["process"]["oomScoreAdj"] == expected
        )
        assert "create --bundle" in (tmp_path / "args").read_text()


def test_kind_configs_name_the_images_the_node_image_holds() -> None:
    for name in ("single.yaml", "provider.yaml", "consumer.yaml"):
        config = yaml.safe_load((CONFIG_DIR / name).read_text())
        assert {"InitConfiguration", "JoinConfiguration"} <= {
            yaml.safe_load(p)["kind"] for p in config["kubeadmConfigPatches"]
        }
        assert config["networking"]["disableDefaultCNI"] is True
        patches = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]
        cluster = next(p for p in patches if p["kind"] == "ClusterConfiguration")
        assert cluster["dns"]["imageTag"] == nodeimage.COREDNS_IMAGE_TAG
        assert cluster["etcd"]["local"]["imageTag"] == nodeimage.ETCD_IMAGE_TAG
        kubelet = next(p for p in patches if p["kind"] == "KubeletConfiguration")
        assert kubelet == {
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
        }


def test_image_specs_follow_kubeadm_and_containerd() -> None:
    kubeadm = [
        "registry.k8s.io/kube-apiserver:v1.36.3",
        "registry.k8s.io/kube-controller-manager:v1.36.3",
        "registry.k8s.io/kube-scheduler:v1.36.3",
        "registry.k8s.io/kube-proxy:v1.36.3",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.1",
        "registry.k8s.io/etcd:3.6.6-0",
    ]
    specs = {
        f"{s.repository}:{s.tag}": s
        for s in nodeimage.image_specs("registry.k8s.io/pause:3.10", kubeadm)
    }
    assert set(specs) == {
        "registry.k8s.io/kube-apiserver:v1.36.3",
        "registry.k8s.io/kube-controller-manager:v1.36.3",
        "registry.k8s.io/kube-scheduler:v1.36.3",
        "registry.k8s.io/kube-proxy:v1.36.3",
        f"registry.k8s.io/coredns/coredns:{nodeimage.COREDNS_IMAGE_TAG}",
        "registry.k8s.io/pause:3.10",
        f"registry.k8s.io/etcd:{nodeimage.ETCD_IMAGE_TAG}",
    }
    assert specs["registry.k8s.io/kube-proxy:v1.36.3"].debian_base


def test_cluster_creation_refuses_to_run_out_of_inotify_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    provider = CONFIG_DIR / "provider.yaml"
    monkeypatch.setattr(cluster, "inotify_instances_in_use", lambda: 0)
    cluster.check_inotify(provider)  # 3 nodes, one control plane: well under any default
    monkeypatch.setattr(cluster, "inotify_instances_in_use", lambda: limit - 10)
    with pytest.raises(StepFailed, match="max_user_instances"):
        cluster.check_inotify(provider)


def test_the_kind_testbeds_clusters_and_what_they_need_of_inotify() -> None:
    from testbed.kind import testbed as kind_testbed

    clusters = kind_testbed.clusters_for(1, 2)
    assert [(c.name, c.role, c.config.name) for c in clusters] == [
        ("provider-1", "provider", "provider.yaml"),
        ("consumer-1", "consumer", "consumer.yaml"),
        ("consumer-2", "consumer", "consumer.yaml"),
    ]
    # Five nodes, three control planes: more than the kernel's default 128 on its own.
    assert kind_testbed._inotify_needed(clusters) == 5 * 15 + 3 * 23
    with pytest.raises(ValueError):
        kind_testbed.clusters_for(0, 1)
