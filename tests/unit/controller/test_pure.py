"""The pure parts: durations, backoff and error classification, access rules, conditions."""

from __future__ import annotations

import datetime as dt

import pytest

from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import ConnectError, TlsError
from certdepot.controller.core.errors import BackoffPolicy, ReconcileError, SecretConflict, classify
from certdepot.controller.core.status import Condition, get_condition, set_condition
from certdepot.controller.kinds.decisions import format_duration, parse_duration
from certdepot.controller.kube import lookup
from certdepot.controller.ops.leader import LeaseView, lease_action

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("720h", 720 * 3600),
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "h", "1d", "1h 30m", "-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(dt.timedelta(hours=1, seconds=5)) == "1h5s"
    assert format_duration(dt.timedelta(0)) == "0s"


def test_backoff_is_exponential_and_capped() -> None:
    policy = BackoffPolicy(base_seconds=5, cap_seconds=60)
    assert [policy.delay(n) for n in range(1, 6)] == [5, 10, 20, 40, 60]
    assert policy.delay(500) == 60


def test_classify_permanent_and_transient() -> None:
    policy = BackoffPolicy(5, 300)
    unauthorized = classify(AcmeProblem("unauthorized", "not granted"), 1, policy)
    assert unauthorized.permanent and unauthorized.reason == "Unauthorized"
    assert unauthorized.retry_after == 300  # permanent: recheck at the cap, not hammering
    assert "not granted" in unauthorized.message
    server = classify(AcmeProblem("serverInternal", "oops"), 3, policy)
    assert not server.permanent and server.retry_after == 20
    conn = classify(ConnectError("GET", "https://r/dir", "refused"), 1, policy)
    assert conn.reason == "ConnectionError" and not conn.permanent
    tls_error = TlsError("GET", "https://r/dir", "[SSL: CERTIFICATE_VERIFY_FAILED] x")
    tls = classify(tls_error, 1, policy)
    assert tls.reason == "TLSError" and "caBundle" in tls.message
    conflict = classify(SecretConflict("not ours"), 1, policy)
    assert conflict.reason == "SecretConflict" and conflict.permanent
    custom = classify(ReconcileError("X", "y", permanent=False), 2, policy)
    assert (custom.reason, custom.retry_after) == ("X", 10)
    bug = classify(KeyError("spec"), 1, policy)
    assert bug.reason == "Failed" and not bug.permanent


def test_classify_rate_limited_uses_the_retry_after_header() -> None:
    problem = AcmeProblem("rateLimited", "too many")
    problem.retry_after = 90.0  # as AcmeClient sets it
    assert classify(problem, 1, BackoffPolicy(5, 300)).retry_after == 90


def test_classify_rate_limited_honours_retry_after() -> None:
    problem = AcmeProblem("rateLimited", "slow down", extra={"retry-after": 120})  # wire spelling
    outcome = classify(problem, 1, BackoffPolicy(5, 300))
    assert outcome.reason == "RateLimited" and outcome.retry_after == 120


def test_selector_semantics() -> None:
    labels = {"team": "a", "env": "prod"}
    assert lookup.selector_matches(None, labels)
    assert lookup.selector_matches({}, labels)
    assert lookup.selector_matches({"matchLabels": {"team": "a"}}, labels)
    assert not lookup.selector_matches({"matchLabels": {"team": "b"}}, labels)
    expr = {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}
    assert lookup.selector_matches(expr, labels)
    assert not lookup.selector_matches(
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, labels
    )
    assert lookup.selector_matches(
        {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels
    )
    assert not lookup.selector_matches(
        {"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels
    )
    assert not lookup.selector_matches(
        {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}, labels
    )


def test_access_rules() -> None:
    ns_repo = {"metadata": {"name": "r", "namespace": "team-a"}, "spec": {}}
    ref = {"name": "r", "kind": "CertificateRepository"}
    assert (
        lookup.check_access(ref=ref, namespace="team-a", repository=ns_repo, namespace_labels={})
        == ""
    )
    assert "another namespace" in lookup.check_access(
        ref=ref, namespace="team-b", repository=ns_repo, namespace_labels={}
    )
    assert "not found" in lookup.check_access(
        ref=ref, namespace="team-b", repository=None, namespace_labels={}
    )
    cluster = {
        "metadata": {"name": "c"},
        "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}}},
    }
    cref = {"name": "c", "kind": "ClusterCertificateRepository"}
    assert (
        lookup.check_access(
            ref=cref, namespace="x", repository=cluster, namespace_labels={"team": "a"}
        )
        == ""
    )
    assert "does not admit" in lookup.check_access(
        ref=cref, namespace="y", repository=cluster, namespace_labels={"team": "b"}
    )


def test_conditions_keep_transition_time_when_status_unchanged() -> None:
    first = set_condition(
        None, Condition("Ready", "False", "Pending", "wait"), now=NOW, generation=1
    )
    later = NOW + dt.timedelta(minutes=5)
    same = set_condition(
        first, Condition("Ready", "False", "Other", "still"), now=later, generation=2
    )
    ready = get_condition(same, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-06-01T00:00:00Z"
    assert ready["reason"] == "Other"
    flipped = set_condition(
        same, Condition("Ready", "True", "Issued", "ok"), now=later, generation=2
    )
    ready = get_condition(flipped, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-06-01T00:05:00Z"
    assert len(flipped) == 1


def test_lease_action() -> None:
    assert lease_action(None, "me", NOW) == "create"
    assert lease_action(LeaseView("me", NOW, 15), "me", NOW) == "renew"
    assert lease_action(LeaseView("other", NOW, 15), "me", NOW + dt.timedelta(seconds=5)) == "wait"
    assert lease_action(LeaseView("other", NOW, 15), "me", NOW + dt.timedelta(seconds=16)) == "take"
    assert lease_action(LeaseView("", None, 15), "me", NOW) == "take"


def test_decide_uses_an_earlier_ari_window_as_renewal_time() -> None:
    from certdepot.controller.core.certinfo import CertInfo
    from certdepot.controller.kinds import decisions
    from certdepot.controller.kube.secrets import SecretState

    info = CertInfo(
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=89),
        "ab",
        "f",
        frozenset({"a.example.test"}),
    )
    state = SecretState(exists=True, ours=True, bundle=object(), info=info)  # type: ignore[arg-type]
    window = decisions.RenewalWindow(NOW + dt.timedelta(days=3), NOW + dt.timedelta(days=4), "ab")
    d = decisions.decide(
        dns_names=["a.example.test"],
        renew_before=None,
        state=state,
        status={"fingerprint": "f"},
        generation=None,
        adopt=False,
        now=NOW,
        window=window,
        recheck=dt.timedelta(days=30),
    )
    assert not d.fetch and d.renewal_time == window.start and d.next_check == window.start
    expiry_based = decisions.decide(
        dns_names=["a.example.test"],
        renew_before=None,
        state=state,
        status={},
        generation=None,
        adopt=False,
        now=NOW,
    )
    assert expiry_based.renewal_time == info.not_after - dt.timedelta(days=30)
    other_serial = decisions.RenewalWindow(NOW, NOW, "cd")
    assert not decisions.decide(
        dns_names=["a.example.test"],
        renew_before=None,
        state=state,
        status={},
        generation=None,
        adopt=False,
        now=NOW,
        window=other_serial,
    ).fetch
