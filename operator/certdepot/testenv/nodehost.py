"""The host side of the one-node cluster: its bridge, its firewall rules and the kernel
settings kubelet changes, each recorded before and put back after (used by node.py).

Pods live on a bridge with a private subnet that this module creates; the node's own
address on it is where kube-apiserver, kubelet and CoreDNS listen, so nothing the cluster
serves is on any other interface. Two filter rules keep pod traffic on the bridge: nothing
from a pod is forwarded to another interface, nothing from another interface reaches a pod.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from certdepot.testenv.hostclean import delete_link, link_exists
from certdepot.testenv.provision import ProvisionError

__all__ = ["Bridge", "IptablesSnapshot", "KernelSettings"]

RULE_COMMENT = "certdepot-node"
# What the node's components add to iptables: kube-proxy's and kubelet's KUBE-* chains, the
# CNI plugins' CNI-* chains, and our own rules (with RULE_COMMENT).
OWNED = ("KUBE-", "CNI-", RULE_COMMENT)
IPTABLES = ("iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy")
TABLES = ("filter", "nat", "mangle", "raw")


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ProvisionError(f"`{' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


@dataclass
class Bridge:
    """A Linux bridge with the node's address; pods' veths join it (CNI bridge plugin)."""

    name: str = "certdepot0"
    subnet: str = "10.213.0.0/24"

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    def create(self) -> None:
        if link_exists(self.name):
            raise ProvisionError(
                f"a link named {self.name} exists already: another node cluster is running, "
                f"or one was killed; remove it with `ip link delete {self.name}`"
            )
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        _sh("ip", "link", "add", self.name, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.name)
        _sh("ip", "link", "set", self.name, "up")
        for rule in self._rules():
            _sh("iptables", "-w", "-I", *rule)

    def _rules(self) -> list[list[str]]:
        mark = ["-m", "comment", "--comment", RULE_COMMENT]
        return [
            ["FORWARD", "-i", self.name, "!", "-o", self.name, *mark, "-j", "DROP"],
            ["FORWARD", "-o", self.name, "!", "-i", self.name, *mark, "-j", "DROP"],
            # The node's address answers only on the bridge and on loopback.
            ["INPUT", "-d", self.gateway, "!", "-i", self.name, "-m", "addrtype", "!",
             "--src-type", "LOCAL", *mark, "-j", "DROP"],
        ]

    def remove(self) -> None:
        for rule in self._rules():
            while _sh("iptables", "-w", "-D", *rule, check=False).returncode == 0:
                pass
        delete_link(self.name)


def _rules(binary: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table in TABLES:
        proc = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True)
        if proc.returncode == 0:
            out[table] = proc.stdout.splitlines()
    return out


@dataclass
class IptablesSnapshot:
    """The rules before the node started; :meth:`restore` removes the node's additions."""

    before: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def take(cls) -> IptablesSnapshot:
        return cls({b: _rules(b) for b in IPTABLES if shutil.which(b)})

    def added(self) -> list[str]:
        """The node's rules and chains present now that were not before."""
        found = []
        for binary, tables in self.before.items():
            for table, lines in _rules(binary).items():
                old = set(tables.get(table, []))
                found += [f"{binary} -t {table} {line}" for line in lines
                          if line not in old and any(o in line for o in OWNED)]
        return found

    def restore(self) -> list[str]:
        """Delete what the node added (rules first, then chains); return what is left."""
        for binary, tables in self.before.items():
            for table, lines in _rules(binary).items():
                old = set(tables.get(table, []))
                new = [ln for ln in lines if ln not in old and any(o in ln for o in OWNED)]
                for line in reversed([ln for ln in new if ln.startswith("-A ")]):
                    _sh(binary, "-w", "-t", table, "-D", *_split(line[3:]), check=False)
                chains = [ln.split()[1] for ln in new if ln.startswith("-N ")]
                for chain in chains:
                    _sh(binary, "-w", "-t", table, "-F", chain, check=False)
                for chain in chains:
                    _sh(binary, "-w", "-t", table, "-X", chain, check=False)
        return self.added()


def _split(rule: str) -> list[str]:
    return shlex.split(rule)


# kubelet sets these when protectKernelDefaults is false (the default); put them back.
KERNEL_SETTINGS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)


@dataclass
class KernelSettings:
    saved: dict[str, str] = field(default_factory=dict)

    @classmethod
    def save(cls) -> KernelSettings:
        saved = {}
        for name in KERNEL_SETTINGS:
            path = Path("/proc/sys", name)
            if path.exists():
                saved[name] = path.read_text().strip()
        return cls(saved)

    def restore(self) -> None:
        for name, value in self.saved.items():
            path = Path("/proc/sys", name)
            try:
                if path.read_text().strip() != value:
                    path.write_text(value + "\n")
            except OSError:
                pass
