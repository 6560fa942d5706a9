"""examples/ for the kind end-to-end run, through the demo's own helpers.

    python tests/e2e/kind_examples.py render URL CA_FILE EAB_KID   -> the manifests, YAML
    python tests/e2e/kind_examples.py eab-secrets NAMESPACE        -> "namespace name key"
    python tests/e2e/kind_examples.py expected                     -> "plural namespace name secret"

The examples are applied exactly as `certdepot demo` applies them: only the repository's
URL, its CA bundle and the EAB key id change (certdepot.demo.manifests.customise).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from certdepot.demo import manifests


def main(argv: list[str]) -> int:
    docs = manifests.load(manifests.examples_dir())
    command = argv[0] if argv else ""
    if command == "render" and len(argv) == 4:
        repo = manifests.Repository(argv[1], Path(argv[2]).read_bytes(), argv[3])
        print(yaml.safe_dump_all(manifests.customise(docs, repo), sort_keys=False))
    elif command == "eab-secrets" and len(argv) == 2:
        for namespace, name, key in manifests.eab_secret_refs(docs, argv[1]):
            print(namespace, name, key)
    elif command == "expected" and len(argv) == 1:
        for e in manifests.expected(docs):
            print(e.plural, e.namespace or "-", e.name, e.secret_name or "-")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
