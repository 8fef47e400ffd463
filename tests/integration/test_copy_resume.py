"""Large streamed copies between real servers through fault-injecting proxies on both sides
(tests/faultproxy.py): every request of the copy is retried on its own, a broken read resumes
at the byte where it broke, and the object lands byte-identical.

The copier makes its requests one at a time, so a seeded plan spoils the same requests on
every run: these are not games of chance.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable

import pytest

from importer.copier import CopyLimits, copy_object
from storage_adapters.errors import ErrorKind
from storage_adapters.retry import RetryPolicy
from tests.faultproxy import FAULT_KINDS, FaultPlan
from tests.proxied import Server, new_bucket, proxied
from tests.unit.test_copier import Recording

MiB = 1024 * 1024
LIMITS = CopyLimits(multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB)
# The source's reads cut short: the first two break mid-answer (seed 1), a range read of
# Azure's later on too; the next ones go through.
READ_FAULTS = FaultPlan(rate=0.5, seed=1, kinds=["reset_mid_answer", "truncated_body"])
# The destination: every kind but the slow answer (it only costs time), 3 to 5 of its first
# 7 requests spoilt, a SlowDown among them (seed 7).
WRITE_FAULTS = FaultPlan(
    rate=0.3, seed=7, kinds=[kind for kind in FAULT_KINDS if kind != "slow_answer"]
)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Callable[[str], Server]:
    return lambda flavor: new_bucket(request, flavor, "resume")


@pytest.mark.parametrize(("src_flavor", "dst_flavor"), [("s3", "oss"), ("azure", "s3")])
def test_a_streamed_multipart_copy_gets_through_faults_request_by_request(
    src_flavor: str, dst_flavor: str, server: Callable[[str], Server]
) -> None:
    source, dest = server(src_flavor), server(dst_flavor)
    data = os.urandom(17 * MiB + 7)
    listed = source.store().put("big.bin", data)
    counted: list[str] = []
    policy = RetryPolicy(
        attempts=30,
        initial_wait=0.0,
        max_wait=0.01,
        observer=lambda error, _attempt: counted.append(error.kind.value),
    )
    with (
        proxied(source, copy.deepcopy(READ_FAULTS)) as (src_proxy, src),
        proxied(dest, copy.deepcopy(WRITE_FAULTS)) as (dst_proxy, dst),
    ):
        reads = Recording(src)
        result = copy_object(reads, dst, listed, "copy/big.bin", LIMITS, retry=policy)  # type: ignore[arg-type]
        injected = {k: src_proxy.counts()[k] + dst_proxy.counts()[k] for k in FAULT_KINDS}
        requests = src_proxy.requests + dst_proxy.requests

    assert result.method == "stream_multipart"
    assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"
    assert dest.store().get_bytes("copy/big.bin", max_size=18 * MiB) == data
    print(f"{src_flavor}->{dst_flavor}: {requests} requests, {injected}, reads at {reads.offsets}")
    # Each spoilt request was retried alone, at most once each (a cut answer whose head the
    # call had is no failure: OSS's complete checks by HEAD), every 503 among them.
    assert sum(injected.values()) >= 10, injected
    assert sum(injected.values()) - 2 <= len(counted) <= sum(injected.values()), counted
    assert counted.count(ErrorKind.RATE_LIMITED.value) == injected["slowdown_503"] > 0
    # Reads that broke resumed where they broke: the source's bytes were read once, in all.
    assert sum(reads.chunk_sizes) == len(data)
    assert len([offset for offset in reads.offsets if offset > 0]) >= 2, reads.offsets
    assert requests < 30, requests  # no copy started over
