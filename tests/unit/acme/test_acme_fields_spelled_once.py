"""Every extension member name is spelled once, in acme/fields.py (issue 18).

A literal like ``payload.get("ephemeral-jwk")`` somewhere else is a second spelling that
can drift from the constant the other side imports. This test reads the production code's
syntax trees and fails on any string literal equal to a ``fields`` value in a JSON-member
position: a dict display's key, a subscript (``x["..."]``), or the first argument of a
``.get()``. Literals elsewhere (log text, error messages, call arguments) are not members.

Some names merely share a spelling with a wire member: a database column, a Kubernetes
status or spec field, an admin-API member, an HTTP header. Each is listed in ``ALLOWED``
with the receiver it is read from, so the same word on any other receiver still fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from certdepot.acme import fields

PACKAGE = Path(fields.__file__).resolve().parent.parent
# testenv and demo are not production code (contract 3 keeps them out of it); they drive
# the real programs from outside and may write a configuration or a status by hand.
SKIPPED = ("testenv", "demo")

WIRE_NAMES = {
    value for name, value in vars(fields).items()
    if name.isupper() and isinstance(value, str)
}

# (module under certdepot/, literal, receiver) -> why it is not a second spelling.
# The receiver is the subscripted or .get()-called expression as written, or, for a dict
# display's key, where the dict goes: the assigned name, the keyword, or "return".
ALLOWED: dict[tuple[str, str, str], str] = {
    # RFC 8555 §7.6 revokeCert's own "reason" member (core RFC 8555, not an extension).
    ("acme/rfc8555.py", "reason", "payload"): "RFC 8555 revokeCert member",
    ("repository/routes/certificates.py", "reason", "payload"): "RFC 8555 revokeCert member",
    # The HTTP Retry-After header (case-insensitive), not the problem document's member.
    ("acme/transport.py", "retry-after", "response.headers"): "HTTP header",
    ("repository/httpproto.py", "retry-after", "headers"): "HTTP header",
    # Kubernetes: a condition's or an Event's reason, the repository object's status.
    ("controller/core/status.py", "reason", "out"): "Kubernetes condition field",
    ("repository/kubewatch.py", "reason", "return"): "RepositoryCertificate/Tenant condition",
    ("repository/kubewatch.py", "reason", "verdict"): "RepositoryCertificate/Tenant condition",
    # The configuration's tenant field "download" (a pydantic model_copy update).
    ("repository/resources.py", "download", "update"): "configuration field tenants[].download",
    ("controller/kinds/account.py", "delegations", "{}"): "CertificateRepository status",
    ("controller/kinds/delegated.py", "delegation", "spec"): "DelegatedCertificate spec",
    ("controller/kinds/delegated.py", "lifetime", "auto"): "spec.autoRenewal.lifetime",
    # The kubectl plugin: Kubernetes status and Events, the admin API's inventory, and the
    # plugin's own JSON report built from them.
    ("kubectl/report.py", "reason", "ready"): "Kubernetes condition field",
    ("kubectl/report.py", "reason", "e"): "Kubernetes Event field",
    ("kubectl/report.py", "reason", "{}"): "plugin's report: an Event",
    ("kubectl/report.py", "reason", "out"): "plugin's report: the Ready condition",
    ("kubectl/report.py", "reason", "return"): "plugin's report: the last failure",
    ("kubectl/report.py", "delegations", "status"): "CertificateRepository status",
    ("kubectl/report.py", "delegations", "out['repository']"): "plugin's report",
    ("kubectl/tables.py", "delegations", "repo"): "CertificateRepository status",
    ("kubectl/tables.py", "reason", "r"): "plugin's report: the Ready condition",
    ("kubectl/tables.py", "reason", "failure"): "plugin's report: the last failure",
    ("kubectl/tables.py", "reason", "c"): "Kubernetes condition field",
    ("kubectl/tables.py", "reason", "e"): "Kubernetes Event field",
    ("kubectl/tables.py", "reason", "cert.get('revocation') or {}"): "admin API inventory",
    ("kubectl/tables.py", "revoked", "cert"): "admin API inventory member",
    # The repository's stored order data (a database JSON column, rendered by views.py
    # through fields.*): "download" is a flag, "delegation" the delegation's name (the
    # wire member is its URL, stored as delegation_url), "lifetime" in seconds.
    ("repository/delegation.py", "delegation", "data"): "stored order data",
    ("repository/delegation.py", "lifetime", "data"): "stored order data",
    ("repository/grants.py", "delegation", "data"): "stored order data",
    ("repository/grants.py", "download", "data"): "stored order data",
    ("repository/orders.py", "download", "data"): "stored order data",
    ("repository/orders.py", "delegation", "data"): "stored order data",
    ("repository/views.py", "download", "data"): "stored order data",
    ("repository/views.py", "delegation", "data"): "stored order data",
    ("repository/routes/download.py", "download", "order['data']"): "stored order data",
    ("repository/star.py", "delegation", "row['data']"): "stored order data",
    # Database columns: certificates.revoked, revocations.reason (an RFC 5280 code).
    ("repository/orders.py", "revoked", "cert"): "certificates column",
    ("repository/renewal.py", "revoked", "cur"): "certificates column",
    ("repository/inventory.py", "revoked", "cert"): "certificates column",
    ("repository/inventory.py", "revoked", "c"): "certificates column",
    ("repository/inventory.py", "reason", "rev"): "revocations column",
    ("repository/issuers/revocation_status.py", "revoked", "row"): "certificates column",
    ("repository/issuers/revocation_status.py", "reason", "rev"): "revocations column",
    ("repository/routes/ari.py", "revoked", "row"): "certificates column",
    ("repository/routes/ari.py", "reason", "rev"): "revocations column",
    ("repository/routes/certificates.py", "revoked", "row"): "certificates column",
    ("repository/rotation.py", "revoked", "where"): "certificates column",
    ("repository/upstream_revocation.py", "reason", "rev"): "revocations column",
    # The admin API (docs/admin-api.md) and the admin CLI printing its inventory.
    ("repository/routes/admin.py", "reason", "doc"): "admin API rotate body",
    ("repository/rotation.py", "reason", "return"): "admin API rotation result",
    ("repository/inventory.py", "reason", "return"): "admin API inventory member",
    ("repository/inventory.py", "revoked", "{}"): "admin API inventory member",
    ("repository/cli.py", "reason", "c['revocation']"): "admin API inventory member",
}


def _receiver_of_dict(parents: dict[ast.AST, ast.AST], node: ast.Dict) -> str:
    up = parents.get(node)
    while isinstance(up, (ast.Dict, ast.List, ast.Tuple, ast.Starred)):
        node, up = up, parents.get(up)  # type: ignore[assignment]
    if isinstance(up, ast.Assign) and len(up.targets) == 1:
        return ast.unparse(up.targets[0])
    if isinstance(up, ast.AnnAssign):
        return ast.unparse(up.target)
    if isinstance(up, ast.keyword) and up.arg:
        return up.arg
    if isinstance(up, ast.Return):
        return "return"
    return "{}"


def member_literals(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """(line, literal, receiver) of every string constant in a JSON-member position."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.lineno, key.value, _receiver_of_dict(parents, node)
        elif isinstance(node, ast.Subscript):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                yield node.lineno, node.slice.value, ast.unparse(node.value)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value, ast.unparse(node.func.value)


def second_spellings(root: Path, used: set[tuple[str, str, str]] | None = None
                     ) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "acme/fields.py" or rel.split("/")[0] in SKIPPED:
            continue
        for line, literal, receiver in member_literals(ast.parse(path.read_text(), rel)):
            if literal not in WIRE_NAMES:
                continue
            if (rel, literal, receiver) in ALLOWED:
                if used is not None:
                    used.add((rel, literal, receiver))
                continue
            found.append(f"{rel}:{line}: {receiver}[{literal!r}]")
    return found


def test_no_module_spells_a_wire_member_name_again() -> None:
    used: set[tuple[str, str, str]] = set()
    found = second_spellings(PACKAGE, used)
    assert not found, (
        "use the constant from certdepot.acme.fields (or, for a name that only shares the "
        "spelling, add it to ALLOWED with why):\n" + "\n".join(found))
    # An exception nobody needs any more only hides a future second spelling.
    assert set(ALLOWED) - used == set()


def test_the_check_sees_each_member_position(tmp_path: Path) -> None:
    # The check must be able to fail: one literal per position, in a module of its own.
    (tmp_path / "repository").mkdir()
    (tmp_path / "repository" / "orders.py").write_text(
        'def f(payload, order):\n'
        '    order.extra = {"star-certificate": 1}\n'
        '    return payload["ephemeral-jwk"], payload.get("download")\n')
    found = second_spellings(tmp_path)
    assert found == [
        "repository/orders.py:2: order.extra['star-certificate']",
        "repository/orders.py:3: payload['ephemeral-jwk']",
        "repository/orders.py:3: payload['download']",
    ]
