"""What the ``certdepot repository`` commands that change state need to know when
certificates and tenants are declared as Kubernetes resources (``kubernetes.resources``).

The commands keep working on the store, for installs without Kubernetes as before. With
resources on, :func:`effective` says so (the resources are the source of truth for the
names they declare, the file for its own) and hands the command the configuration the
server has in force, the file merged with the resources it can read, so ``renew``,
``rotate`` or ``import`` also find a RepositoryCertificate.
"""

from __future__ import annotations

from collections.abc import Callable

from certdepot.repository.config import Config


def resources_in_charge(config: Config) -> str | None:
    """The note a state-changing command prints, or None without resources."""
    if not config.kubernetes.resources:
        return None
    where = config.kubernetes.namespace or "the repository's namespace"
    return (f"note: RepositoryCertificate and RepositoryTenant resources in {where} are the "
            "source of truth for the certificates and tenants they declare (the "
            "configuration file for its own entries); this command changes only the "
            "repository's store. Tenants declared as resources get their EAB credentials "
            "in a Secret, and rotate them with spec.eab.rotationGeneration.")


def effective(config: Config, echo: Callable[[str], None]) -> Config:
    """``config`` merged with the resources (printing the note), or ``config`` itself
    without resources or when they cannot be read (saying so)."""
    note = resources_in_charge(config)
    if note is None:
        return config
    echo(note)
    return with_resources(config, echo)


def with_resources(config: Config, echo: Callable[[str], None]) -> Config:
    """``config`` merged with the resources it can read (for the commands that only read,
    such as ``inventory``: no note), or ``config`` itself when resources are off or cannot
    be read (saying so)."""
    if not config.kubernetes.resources:
        return config
    try:
        # Imported only here: installs outside Kubernetes never load the client.
        from certdepot.repository import kubewatch, resources

        certs, tenants = kubewatch.read_declared(config.kubernetes)
        return resources.merge(config, certs, tenants).config
    except Exception as exc:  # no API server from here: the file alone still works
        echo(f"warning: cannot read the resources ({type(exc).__name__}); using the "
             "configuration file only")
        return config
