"""The operator's renewalInfo polling (renewalwatch): one poll per certificate on the
repository's Retry-After, every holder woken when the answer says renew; and the Rotated
event of a CertificateDownload whose certificate the repository revoked."""

from __future__ import annotations

import asyncio
import datetime as dt

from cryptography import x509

from certdepot.controller.gateway.model import Endpoint, RenewalWindow
from certdepot.controller.gateway.sharing import RenewalWatch
from certdepot.controller.kinds import download
from certdepot.controller.kinds.deps import Deps

from .conftest import Clock, Events, download_body
from .fakes import FakeKube, FakeRepository, MiniCA
from .test_download_reconcile import NAMES, secret_chain


class Answers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asked = 0
        self.due = False
        self.retry_after: float | None = 0.01

    async def __call__(self, endpoint: Endpoint, cert: x509.Certificate) -> RenewalWindow:
        self.asked += 1
        start = self.clock.now + dt.timedelta(days=-1 if self.due else 30)
        return RenewalWindow(
            start,
            start + dt.timedelta(hours=1),
            format(cert.serial_number, "x"),
            retry_after=self.retry_after,
            revoked="keyCompromise" if self.due else None,
        )


async def test_one_poll_per_certificate_wakes_every_holder(
    ca: MiniCA, clock: Clock, repo: FakeRepository
) -> None:
    chain = repo.manage(NAMES)
    answers = Answers(clock)
    woken: list[str] = []
    watch = RenewalWatch(answers, woken.append, clock, floor=0.01, ceiling=0.05)
    endpoint = Endpoint("https://repo.test/directory", ca.int_key, account_url="https://a/1")
    try:
        for n in range(3):
            assert watch.watch(f"CertificateDownload/ns/d{n}", endpoint, chain[0]) is None
        await asyncio.sleep(0.1)
        assert answers.asked >= 2 and not woken  # polled on Retry-After, nothing due
        asked = answers.asked
        await asyncio.sleep(0.1)
        assert answers.asked - asked <= 0.1 / 0.01 + 1  # never closer than the floor
        answers.due = True
        for _ in range(50):
            if len(woken) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(woken) == [f"CertificateDownload/ns/d{n}" for n in range(3)]
        await asyncio.sleep(0.1)
        assert len(woken) == 3  # the same answer wakes each holder once
        window = watch.watch("CertificateDownload/ns/d0", endpoint, chain[0])
        assert window is not None and window.revoked == "keyCompromise"
        for n in range(3):
            watch.forget(f"CertificateDownload/ns/d{n}")
        asked = answers.asked
        await asyncio.sleep(0.1)
        assert answers.asked == asked  # nobody holds it: no more polls
    finally:
        await watch.aclose()


def test_delay_follows_retry_after_within_bounds(clock: Clock) -> None:
    watch = RenewalWatch(Answers(clock), lambda _: None, clock, floor=5, ceiling=300)
    start = clock.now
    window = RenewalWindow(start, start, "ab", retry_after=30)
    assert watch.delay(window) == 30
    assert watch.delay(RenewalWindow(start, start, "ab", retry_after=1)) == 5
    assert watch.delay(RenewalWindow(start, start, "ab", retry_after=86400)) == 300
    assert watch.delay(None) == 300


async def test_revoked_certificate_is_rotated_with_an_event(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock, events: Events
) -> None:
    first = repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    newer = repo.manage(NAMES)
    serial = format(first[0].serial_number, "x")
    repo.windows[serial] = RenewalWindow(
        clock.now - dt.timedelta(hours=1),
        clock.now - dt.timedelta(minutes=1),
        serial,
        retry_after=30,
        revoked="keyCompromise",
    )
    clock.now += deps.settings.renewal_info_interval
    step = await download.reconcile(body, deps)
    assert secret_chain(kube)[0] == newer[0]
    ready = step.status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Rotated")
    assert "keyCompromise" in ready["message"] and serial in ready["message"]
    assert events[-1][:2] == ("Normal", "Rotated") and "keyCompromise" in events[-1][2]


async def test_fresh_certificates_are_not_asked_about_at_once(
    ca: MiniCA, clock: Clock, repo: FakeRepository
) -> None:
    """A rollout: the first fresh certificate of a directory asks (to learn the interval),
    the others wait for its answer and then one interval; then each is polled."""
    answers = Answers(clock)
    answers.retry_after = 0.2
    watch = RenewalWatch(answers, lambda _: None, clock, floor=0.01, ceiling=5, jitter=lambda: 1)
    endpoint = Endpoint("https://repo.test/directory", ca.int_key, account_url="https://a/1")
    chains = [repo.manage([f"n{n}.example.test"]) for n in range(5)]
    try:
        for n, chain in enumerate(chains):
            watch.watch(f"CertificateDownload/ns/d{n}", endpoint, chain[0], fresh=True)
        await asyncio.sleep(0.1)
        assert answers.asked == 1  # only the one that learns the interval
        await asyncio.sleep(0.2)
        assert answers.asked == 1 + 4 + 1  # the others, one interval later (and the first again)
        later = repo.manage(["late.example.test"])
        watch.watch("CertificateDownload/ns/late", endpoint, later[0], fresh=True)
        asked = answers.asked
        await asyncio.sleep(0.1)
        # The interval is known now: a fresh certificate alone does not ask at once.
        assert answers.asked - asked <= 5  # the five older ones at most, not the new one
        assert watch.polls == answers.asked
    finally:
        await watch.aclose()


async def test_fresh_certificate_waits_no_longer_than_the_ceiling(
    ca: MiniCA, clock: Clock, repo: FakeRepository
) -> None:
    answers = Answers(clock)
    answers.retry_after = 3600  # the repository says an hour; the operator's ceiling wins
    watch = RenewalWatch(answers, lambda _: None, clock, floor=0.01, ceiling=0.2, jitter=lambda: 1)
    endpoint = Endpoint("https://repo.test/directory", ca.int_key, account_url="https://a/1")
    first, second = repo.manage(["a.example.test"]), repo.manage(["b.example.test"])
    try:
        watch.watch("CertificateDownload/ns/a", endpoint, first[0], fresh=True)
        await asyncio.sleep(0.05)
        watch.watch("CertificateDownload/ns/b", endpoint, second[0], fresh=True)
        await asyncio.sleep(0.1)
        assert answers.asked == 1
        await asyncio.sleep(0.2)
        assert answers.asked >= 2  # b asked within the ceiling of its download
    finally:
        await watch.aclose()


async def test_a_download_asks_no_renewal_info_until_the_interval(
    ca: MiniCA, deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    """Without the shared poll (deps.renewals None): the step after a download keeps the
    local window; one renewal_info_interval later it asks, and a rotation is seen."""
    asked: list[str] = []
    ask = repo.renewal_window

    async def counting(endpoint: Endpoint, cert: x509.Certificate) -> RenewalWindow | None:
        asked.append(format(cert.serial_number, "x"))
        return await ask(endpoint, cert)

    repo.renewal_window = counting  # type: ignore[method-assign]
    first = repo.manage(NAMES)
    body = download_body()
    body["status"] = (await download.reconcile(body, deps)).status
    body["status"] = (await download.reconcile(body, deps)).status
    assert asked == [] and secret_chain(kube)[0] == first[0]
    clock.now += deps.settings.renewal_info_interval
    await download.reconcile(body, deps)
    assert asked == [format(first[0].serial_number, "x")]
