"""Build a running repository from its configuration: store, key vault, issuers."""

from __future__ import annotations

from certdepot.repository.config import (
    AcmeIssuer,
    Config,
    ConfigError,
    ImportedIssuer,
    LocalCaIssuer,
)
from certdepot.repository.issuers import Issuer
from certdepot.repository.issuers.imported import Imported
from certdepot.repository.issuers.local_ca import LocalCa
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.state import Repo
from certdepot.repository.store import Store
from certdepot.repository.urls import Urls


def open_store(config: Config) -> tuple[Store, KeyVault]:
    vault = KeyVault(config.key_encryption_key.load())
    store = Store(config.storage.database_url)
    try:
        store.migrate()
    except Exception as exc:
        raise ConfigError(f"storage.url: cannot open the store: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return store, vault


def build_issuers(config: Config, store: Store, vault: KeyVault, urls: Urls
                  ) -> dict[str, Issuer]:
    issuers: dict[str, Issuer] = {}
    for cfg in config.issuers:
        if isinstance(cfg, LocalCaIssuer):
            issuers[cfg.name] = LocalCa(cfg, store, vault, urls.base)
        elif isinstance(cfg, ImportedIssuer):
            issuers[cfg.name] = Imported(cfg)
        elif isinstance(cfg, AcmeIssuer):
            from certdepot.repository.issuers.acme_upstream import AcmeUpstream

            issuers[cfg.name] = AcmeUpstream(cfg, store, vault)
    return issuers


def build_repo(config: Config, store: Store | None = None, vault: KeyVault | None = None
               ) -> Repo:
    if store is None or vault is None:
        store, vault = open_store(config)
    store.max_nonces = config.limits.max_outstanding_nonces
    urls = Urls(config.base_url)
    return Repo(config=config, store=store, vault=vault,
                issuers=build_issuers(config, store, vault, urls), urls=urls)
