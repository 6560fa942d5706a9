"""A one-node Kubernetes cluster on this machine, from provisioned binaries and Debian's
containerd: pods really run, Services route, cluster DNS answers.

    with NodeCluster(images=[image_tarball]) as cluster:
        cluster.kube.kubectl("get", "nodes")

What runs, all started and stopped here by PID (root only):

- the control plane of :class:`~certdepot.testenv.kube.KubeEnv` (etcd, kube-apiserver),
  listening on the node's bridge address instead of loopback so that pods reach it through
  the ``kubernetes`` Service; kube-scheduler and kube-controller-manager on loopback;
- containerd (CRI, runc with cgroupfs, the CNI bridge plugin on a bridge this module
  creates: see :mod:`certdepot.testenv.nodehost`), with a locally built pause image and the
  given image tarballs imported (nothing is ever pulled);
- kubelet, kube-proxy (iptables mode) and CoreDNS (on the node's address, answering only
  for ``cluster.local``; every other name is NXDOMAIN, so no pod resolves the outside).

:meth:`stop` deletes the pods (kubelet tears their network down), stops every process,
kills what is left in the pods' cgroups, unmounts everything under the work directory,
deletes the bridge and every iptables rule or chain the node added, and puts back the
kernel settings kubelet changed; :meth:`leftovers` says what (if anything) remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from certdepot.testenv import procs
from certdepot.testenv.hostclean import link_exists, mounts_under, unmount_under
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.nodehost import Bridge, IptablesSnapshot, KernelSettings
from certdepot.testenv.nodeimages import PAUSE_IMAGE, pause_image
from certdepot.testenv.provision import ProvisionError, binary
from certdepot.testenv.system import find_node_tool, missing_node_tools

__all__ = ["NODE_NAME", "NodeCluster"]

NODE_NAME = "certdepot-node"
CGROUP_ROOT = "/certdepot-node"
CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")
SERVICE_RANGE = "10.0.0.0/24"  # KubeEnv's --service-cluster-ip-range
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy", "coredns")


def _dump(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc) if path.suffix == ".yaml" else json.dumps(doc, indent=1))
    return path


class NodeCluster(procs.Service):
    """Control plane + one node in ``workdir`` (a fresh short temporary directory)."""

    PROCESSES = ("kubelet", "coredns", "proxy", "controller_manager", "scheduler", "containerd")

    def __init__(self, images: Sequence[Path] = (), *, bridge: Bridge | None = None,
                 start_timeout: float = 180.0) -> None:
        # Short: containerd's and the shims' unix sockets live under it (108-byte limit).
        super().__init__(None, "cdn-")
        self.workdir.chmod(0o755)  # hostPath volumes below it are read by pod users
        self.images = list(images)
        self.bridge = bridge or Bridge()
        self.start_timeout = start_timeout
        self.kube = KubeEnv(
            self.workdir / "control", address=self.bridge.gateway,
            # The node's name resolves nowhere (nothing is resolved outside): logs and exec
            # reach kubelet at the node's address.
            extra_apiserver_args=["--kubelet-preferred-address-types=InternalIP"],
        )
        self.socket = self.workdir / "containerd" / "containerd.sock"
        self.containerd: procs.ManagedProcess | None = None
        self.kubelet: procs.ManagedProcess | None = None
        self.scheduler: procs.ManagedProcess | None = None
        self.controller_manager: procs.ManagedProcess | None = None
        self.proxy: procs.ManagedProcess | None = None
        self.coredns: procs.ManagedProcess | None = None
        self._iptables: IptablesSnapshot | None = None
        self._kernel: KernelSettings | None = None
        self._left: list[str] = []

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> NodeCluster:
        self._preflight()
        self._iptables, self._kernel = IptablesSnapshot.take(), KernelSettings.save()
        try:
            self.bridge.create()
            self.kube.start()
            self._start_containerd()
            self._load_images()
            self._start_control()
            self._start_node()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise ProvisionError("the one-node cluster needs root (it runs containerd, kubelet "
                                 "and kube-proxy, and creates a bridge)")
        missing = missing_node_tools()
        if missing:
            raise ProvisionError(
                f"missing for the one-node cluster: {', '.join(missing)}; run `make "
                "provision-node` as root (apt-get installs containerd, runc, "
                "containernetworking-plugins, iptables, conntrack, docker.io, mmdebstrap)"
            )
        for name in (*NODE_BINARIES, "kube-apiserver", "etcd", "kubectl"):
            binary(name)  # a missing one says how to get it
        for image in self.images:
            if not image.is_file():
                raise ProvisionError(f"image tarball {image} is missing; run `make image`")

    def stop(self) -> None:
        """Stop everything and clean the host (idempotent); see :meth:`leftovers`."""
        if self.kubelet is not None and self.kubelet.running and self.kube.apiserver:
            self._drain()
        own, self._own_workdir = self._own_workdir, False
        super().stop()  # kubelet, coredns, kube-proxy, controllers, containerd
        self._own_workdir = own
        self._kill_pods_and_shims()
        self.kube.stop()
        self._cleanup_host()
        if own and not self._left:
            procs.remove_workdir(self.workdir)

    def leftovers(self) -> list[str]:
        """What the last :meth:`stop` could not remove (empty when the host is clean)."""
        return list(self._left)

    # --- control plane and runtime ---------------------------------------------------

    def _start_containerd(self) -> None:
        state = self.workdir / "containerd"
        cri = {
            "sandbox_image": PAUSE_IMAGE,
            # The sandbox refuses a negative oom_score_adj; keep the pods' at or above ours.
            "restrict_oom_score_adj": True,
            "netns_mounts_under_state_dir": True,
            "stream_server_address": "127.0.0.1",
            "containerd": {
                "snapshotter": "overlayfs",
                "default_runtime_name": "runc",
                "runtimes": {"runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": False,
                                "BinaryName": str(find_node_tool("runc"))},
                }},
            },
            "cni": {"bin_dir": str(CNI_BIN), "conf_dir": str(self.workdir / "cni")},
        }
        config = (
            'version = 2\n'
            f'root = "{state / "root"}"\nstate = "{state / "state"}"\noom_score = 0\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{state / "opt"}"\n'
            + _toml('plugins."io.containerd.grpc.v1.cri"', cri)
        )
        state.mkdir(parents=True, exist_ok=True)
        (state / "config.toml").write_text(config)
        _dump(self.workdir / "cni" / "10-certdepot.conflist", self._cni_config())
        self.containerd = procs.start(
            "containerd",
            [str(find_node_tool("containerd")), f"--config={state / 'config.toml'}"],
            log_path=self.workdir / "containerd.log",
        )
        deadline = time.monotonic() + 60
        while self.ctr("version", check=False).returncode != 0:
            self.containerd.check_running()
            if time.monotonic() > deadline:
                raise self.containerd.fail("containerd did not answer within 60s")
            time.sleep(0.3)

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "0.4.0",
            "name": "certdepot",
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge.name,
                "isGateway": True,
                # No NAT: pods never reach past this machine (nodehost's rules drop it too).
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.bridge.subnet, "gateway": self.bridge.gateway}]],
                    # Pods get a route to the Service range only, no default route: the
                    # bridge and the ClusterIPs are all they can reach.
                    "routes": [{"dst": SERVICE_RANGE}],
                    "dataDir": str(self.workdir / "cni-ipam"),
                },
            }],
        }

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the CRI namespace."""
        argv = [str(find_node_tool("ctr")), f"--address={self.socket}", "--namespace=k8s.io",
                *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise ProvisionError(f"`ctr {' '.join(args)}` failed: {proc.stderr[-2000:]}")
        return proc

    def load_image(self, tarball: Path) -> None:
        """Import an image tarball (docker save / OCI) into the node's containerd."""
        self.ctr("images", "import", "--no-unpack=false", str(tarball))

    def _load_images(self) -> None:
        for tarball in (pause_image(), *self.images):
            self.ctr("images", "import", str(tarball))

    def _admin(self) -> list[str]:
        return [f"--kubeconfig={self.kube.kubeconfig}"]

    def _start_control(self) -> None:
        pki = self.kube.workdir / "pki"
        auth = [f"--authentication-kubeconfig={self.kube.kubeconfig}",
                f"--authorization-kubeconfig={self.kube.kubeconfig}",
                "--bind-address=127.0.0.1", "--leader-elect=false"]
        self.scheduler = procs.start(
            "kube-scheduler",
            [binary("kube-scheduler"), *self._admin(), *auth,
             f"--secure-port={procs.free_port()}"],
            log_path=self.workdir / "kube-scheduler.log",
        )
        self.controller_manager = procs.start(
            "kube-controller-manager",
            [binary("kube-controller-manager"), *self._admin(), *auth,
             f"--secure-port={procs.free_port()}",
             f"--root-ca-file={self.kube.ca_path}",
             f"--service-account-private-key-file={pki / 'sa.key'}",
             "--use-service-account-credentials=false",
             "--allocate-node-cidrs=false",
             f"--service-cluster-ip-range={SERVICE_RANGE}"],
            log_path=self.workdir / "kube-controller-manager.log",
        )

    def _start_node(self) -> None:
        _make_cgroups()
        (self.workdir / "resolv.conf").write_text("# pods resolve cluster names only\n")
        self.proxy = procs.start(
            "kube-proxy",
            [binary("kube-proxy"), f"--config={self._proxy_config()}"],
            log_path=self.workdir / "kube-proxy.log",
        )
        self.coredns = procs.start(
            "coredns",
            [binary("coredns"), "-conf", str(self._corefile())],
            log_path=self.workdir / "coredns.log",
            cwd=self.workdir,
        )
        self.kubelet = procs.start(
            "kubelet",
            [binary("kubelet"), f"--config={self._kubelet_config()}", *self._admin(),
             f"--hostname-override={NODE_NAME}", f"--node-ip={self.bridge.gateway}",
             f"--root-dir={self.workdir / 'kubelet'}",
             f"--cert-dir={self.workdir / 'kubelet-pki'}"],
            log_path=self.workdir / "kubelet.log",
        )

    def _proxy_config(self) -> Path:
        return _dump(self.workdir / "kube-proxy.yaml", {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kube.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": self.bridge.subnet,
            "bindAddress": self.bridge.gateway,
            "healthzBindAddress": f"127.0.0.1:{procs.free_port()}",
            "metricsBindAddress": f"127.0.0.1:{procs.free_port()}",
            "nodePortAddresses": [f"{self.bridge.gateway}/32"],
            # Leave the host's conntrack limits and timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        })

    def _corefile(self) -> Path:
        path = self.workdir / "Corefile"
        bind = f"bind {self.bridge.gateway}"
        path.write_text(
            f"cluster.local:53 {{\n  {bind}\n  errors\n"
            f"  kubernetes cluster.local {{\n    kubeconfig {self.kube.kubeconfig}\n  }}\n}}\n"
            # Nothing outside the cluster is resolved: no query ever leaves this machine.
            f".:53 {{\n  {bind}\n  template ANY ANY {{\n    rcode NXDOMAIN\n  }}\n}}\n"
        )
        return path

    def _kubelet_config(self) -> Path:
        small = {"memory.available": "1Mi", "nodefs.available": "1%",
                 "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
        return _dump(self.workdir / "kubelet.yaml", {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.bridge.gateway,
            "port": procs.free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": procs.free_port(),
            # kube-apiserver calls kubelet (logs, exec) without a client certificate; kubelet
            # listens on the bridge address only, which nodehost's rules keep local.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.kube.ca_path)}},
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": CGROUP_ROOT,
            # This machine has cgroup v1, which kubelet 1.35+ refuses unless told.
            "failCgroupV1": False,
            "failSwapOn": False,
            "clusterDNS": [self.bridge.gateway],
            "clusterDomain": "cluster.local",
            "resolvConf": str(self.workdir / "resolv.conf"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            # A shared test machine's disk is often fuller than kubelet's defaults allow.
            "evictionHard": small,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
        })

    def wait_ready(self) -> None:
        """Until the node is Ready and the default ServiceAccount exists (pods can start)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            for proc in (self.kubelet, self.proxy, self.coredns, self.containerd):
                if proc is not None:
                    proc.check_running()
            node = self.kube.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            sa = self.kube.kubectl("get", "sa", "default", "-n", "default", check=False)
            if node.returncode == 0 and sa.returncode == 0 and _ready(json.loads(node.stdout)):
                return
            if time.monotonic() > deadline:
                assert self.kubelet is not None
                raise self.kubelet.fail(f"node {NODE_NAME} not Ready after "
                                        f"{self.start_timeout:.0f}s")
            time.sleep(1)

    # --- teardown --------------------------------------------------------------------

    def _drain(self) -> None:
        # Deleting the pods lets kubelet stop them through the CRI, which tears down their
        # network namespaces and veths; what is still there afterwards is killed below.
        self.kube.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=2",
                          "--timeout=60s", "--wait=true", check=False, timeout=90)

    def _kill_pods_and_shims(self) -> None:
        # The runc shims leave containerd's process group (they outlive it by design), and
        # the containers are their children: find them by our socket and by our cgroups.
        pids = set(_cgroup_pids()) | set(_pids_with(str(self.socket)))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        _remove_cgroups()

    def _cleanup_host(self) -> None:
        left = [f"mount {m}" for m in unmount_under(self.workdir)]
        with contextlib.suppress(ProvisionError):
            # kube-proxy's own sweep of its chains (both iptables back ends).
            subprocess.run([str(binary("kube-proxy")), "--cleanup"], capture_output=True)
        self.bridge.remove()
        if self._iptables is not None:
            left += [f"iptables rule {r}" for r in self._iptables.restore()]
        if self._kernel is not None:
            self._kernel.restore()
        if link_exists(self.bridge.name):
            left.append(f"link {self.bridge.name}")
        left += [f"process {p}" for p in _cgroup_pids()]
        left += [f"cgroup {c}" for c in _our_cgroups()]
        left += [f"mount {m}" for m in mounts_under(self.workdir)]
        self._left = left


def _toml(section: str, values: dict[str, object]) -> str:
    """The small TOML subset containerd's config needs (tables, strings, bools)."""
    scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    lines = [f"[{section}]"]
    for key, value in scalars.items():
        lines.append(f"  {key} = {json.dumps(value)}")
    out = "\n".join(lines) + "\n"
    for key, table in tables.items():
        assert isinstance(table, dict)
        out += _toml(f"{section}.{key}", table)
    return out


def _ready(node: dict[str, object]) -> bool:
    status = node.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _our_cgroups() -> list[Path]:
    found = []
    for hierarchy in CGROUP_FS.iterdir() if CGROUP_FS.is_dir() else []:
        root = hierarchy / CGROUP_ROOT.lstrip("/")
        if root.is_dir():
            found += sorted((p for p in root.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True)
            found.append(root)
    return found


def _make_cgroups() -> None:
    """kubelet wants its cgroupRoot to exist in every hierarchy (cgroup v1)."""
    for hierarchy in CGROUP_FS.iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        group = hierarchy / CGROUP_ROOT.lstrip("/")
        group.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):  # empty in a new cpuset: copy them
            if (group / name).exists() and not (group / name).read_text().strip():
                (group / name).write_text((hierarchy / name).read_text())


def _cgroup_pids() -> list[int]:
    pids: set[int] = set()
    for group in _our_cgroups():
        with contextlib.suppress(OSError):
            pids |= {int(x) for x in (group / "cgroup.procs").read_text().split()}
    return sorted(pids)


def _remove_cgroups() -> None:
    for group in _our_cgroups():
        with contextlib.suppress(OSError):
            group.rmdir()


def _pids_with(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
