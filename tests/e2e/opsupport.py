"""Support for the operations tests (test_reload.py, test_audit_metrics.py): reading
mcp-warden's Prometheus text and JSON-line files, writing policy the ways real deployments
do (editor save, `mv`, a Kubernetes ConfigMap `..data` symlink swap), a fixed-rate load
generator, background pollers, and a relying party that verifies every ID token the
upstream receives while it receives them.

Nothing here sleeps to wait for readiness: the only timed waits are the load generator's
pacing (the shape of the load) and the pollers' intervals; every wait for a condition goes
through harness.wait_until with a deadline.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx
import jwt

# --------------------------------------------------------------------------------------
# Prometheus text
# --------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Metrics:
    """One scrape of /metrics, parsed (text format 0.0.4)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if m is None:
                raise ValueError(f"not a Prometheus sample line: {line!r}")
            labels = dict(_LABEL.findall(m.group(3) or ""))
            self.samples.append(Sample(m.group(1), labels, float(m.group(4))))

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one series `name` whose labels are exactly `labels`."""
        for s in self.series(name):
            if s.labels == labels:
                return s.value
        return None

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        v = self.value(name, **labels)
        return default if v is None else v

    def label_values(self) -> set[str]:
        return {v for s in self.samples for v in s.labels.values()}


_local = threading.local()


def client() -> httpx.Client:
    """A persistent HTTP client for the calling thread. (`httpx.get` builds a new client —
    and an SSL context — per call: too much CPU for pollers that share a GIL with the load.)"""
    c = getattr(_local, "client", None)
    if c is None:
        c = _local.client = httpx.Client(timeout=10.0)
    return c


def scrape(warden: harness.Warden) -> Metrics:
    resp = client().get(f"{warden.http_url}/metrics")
    resp.raise_for_status()
    assert resp.headers.get("content-type", "").startswith("text/plain"), resp.headers
    return Metrics(resp.text)


def reloads(warden: harness.Warden, result: str) -> float:
    return scrape(warden).get("mcp_warden_policy_reloads_total", result=result)


def wait_for_reload(warden: harness.Warden, result: str, above: float, *, timeout: float = 15.0) -> float:
    """Poll /metrics until mcp_warden_policy_reloads_total{result} exceeds `above`."""
    return harness.wait_until(
        lambda: (v := reloads(warden, result)) > above and v,
        timeout=timeout,
        what=f"waiting for a policy reload with result={result} (count above {above})",
        procs=[warden.proc],
    )


# --------------------------------------------------------------------------------------
# JSON-line files (audit, JSON logs)
# --------------------------------------------------------------------------------------


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines file, parsed (a line still being written is left)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def complete_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line.rstrip("\n") for line in text.splitlines(keepends=True) if line.endswith("\n")]


# --------------------------------------------------------------------------------------
# Writing policy the ways deployments do
# --------------------------------------------------------------------------------------

_save_counter = itertools.count()


def editor_save(path: Path, text: str) -> None:
    """Save like an editor: a hidden temporary file in the same directory, fsync, rename over."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{next(_save_counter)}.swp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def mv_replace(path: Path, text: str, staging: Path) -> None:
    """`cat > staging/x && mv staging/x path`: written elsewhere, moved over the old file."""
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{path.name}.{next(_save_counter)}"
    tmp.write_text(text)
    os.rename(tmp, path)


class ConfigMapDir:
    """A directory laid out and updated exactly like a Kubernetes ConfigMap/Secret volume
    (kubelet's AtomicWriter):

        root/..2026_01_02_03_04_05.123/policy.yaml   the files of one version
        root/..data -> ..2026_01_02_03_04_05.123     the current version
        root/policy.yaml -> ..data/policy.yaml        what consumers open

    An update writes a new timestamped directory, points a new `..data_tmp` symlink at it,
    renames `..data_tmp` over `..data` (the atomic switch), then removes the old version.
    The top-level symlinks never change.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.versions = 0

    def write(self, files: dict[str, str]) -> None:
        self.versions += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}{self.versions}"
        new = self.root / stamp
        new.mkdir()
        for name, text in files.items():
            (new / name).write_text(text)
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        for link in self.root.iterdir():
            if not link.name.startswith("..") and link.is_symlink() and link.name not in files:
                link.unlink()
        if old is not None and old != stamp:
            shutil.rmtree(self.root / old, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Fixed-rate load
# --------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One kind of request in the load mix.

    `build(seq)` returns (url, headers, body); `check(seq, response)` returns None when the
    answer is the expected one, else a description of what was wrong.
    """

    name: str
    build: Callable[[int], tuple[str, dict[str, str], str]]
    check: Callable[[int, httpx.Response], str | None]


@dataclass
class Outcome:
    probe: str
    seq: int
    at: float
    status: int | None
    problem: str | None


class FixedRateLoad:
    """Sends `probes` (cycled in order) at a fixed rate from a pool of threads until stopped,
    bounded by `max_requests` and `max_seconds`. Every answer is checked and kept."""

    def __init__(
        self, probes: list[Probe], *, rate: float, max_requests: int, max_seconds: float, workers: int = 32
    ) -> None:
        self.probes = probes
        self.rate = rate
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.workers = workers
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0
        self.hit_bound = False

    def start(self) -> None:
        self.started = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                seq = next(self._seq)
                due = self.started + seq / self.rate
                if seq >= self.max_requests or due - self.started > self.max_seconds:
                    self.hit_bound = True
                    return
                # Pacing (the load's shape), interruptible by stop().
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                probe = self.probes[seq % len(self.probes)]
                url, headers, body = probe.build(seq)
                status: int | None = None
                try:
                    resp = client.post(url, content=body, headers=headers)
                    status = resp.status_code
                    problem = probe.check(seq, resp)
                except Exception as exc:  # noqa: BLE001 - every failure is an unexpected answer
                    problem = f"transport error: {exc!r}"
                with self._lock:
                    self.outcomes.append(Outcome(probe.name, seq, time.monotonic(), status, problem))

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self.stopped = time.monotonic()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise harness.HarnessError(f"load threads did not stop: {alive}")

    def problems(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem is not None]

    def summary(self) -> str:
        by_probe = Counter(o.probe for o in self.outcomes)
        elapsed = (self.stopped or time.monotonic()) - self.started
        rate = len(self.outcomes) / elapsed if elapsed > 0 else 0.0
        return (
            f"{len(self.outcomes)} requests in {elapsed:.1f}s ({rate:.0f}/s, target {self.rate:.0f}/s, "
            f"{self.workers} workers): {dict(by_probe)}; unexpected: {len(self.problems())}"
        )


# --------------------------------------------------------------------------------------
# Background pollers and the relying party
# --------------------------------------------------------------------------------------


class Poller:
    """Calls `fn` every `interval` seconds in a thread and keeps (wall-clock time, result)."""

    def __init__(self, name: str, fn: Callable[[], Any], interval: float) -> None:
        self.fn = fn
        self.interval = interval
        self.results: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                value: Any = self.fn()
            except Exception as exc:  # noqa: BLE001 - a failed poll is a result
                value = exc
            self.results.append((time.time(), value))
            if self._stop.wait(self.interval):
                return

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class CountingJWKClient(jwt.PyJWKClient):
    """PyJWT's JWKS client, counting how often it actually fetched the JWKS."""

    def __init__(self, uri: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        return super().fetch_data()


REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]


@dataclass
class VerifiedToken:
    kid: str
    claims: dict[str, Any]


@dataclass
class TokenVerifier:
    """The upstream's relying party: tails the upstream's request record and verifies each
    new bearer token when it arrives (as a server would), with one long-lived PyJWKClient.
    """

    record_path: Path
    jwk_client: CountingJWKClient
    issuer: str
    audience: str
    verified: dict[str, VerifiedToken] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    records: int = 0
    _offset: int = 0
    _buffer: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TokenVerifier:
        self._thread = threading.Thread(target=self._run, name="token-verifier", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.drain()
            if self._stop.wait(0.1):
                self.drain()
                return

    def drain(self) -> None:
        try:
            with open(self.record_path, encoding="utf-8") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self.records += 1
                self._check_record(json.loads(line))

    def _check_record(self, record: dict[str, Any]) -> None:
        values = harness.record_headers(record, "authorization")
        if len(values) != 1 or not values[0].startswith("Bearer "):
            self.failures.append(f"{record['method']} {record['path']}: Authorization {values!r}")
            return
        token = values[0][len("Bearer ") :]
        if token in self.verified:
            return
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise ValueError(f"alg {header.get('alg')!r}")
            # Unknown kid -> PyJWKClient refetches the JWKS once: what real verifiers do.
            key = self.jwk_client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
            if claims["iss"] != self.issuer or claims["aud"] != self.audience:
                raise ValueError(f"iss/aud {claims['iss']!r}/{claims['aud']!r}")
            self.verified[token] = VerifiedToken(header["kid"], claims)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            self.failures.append(f"token {token[:24]}...: {exc!r}")

    def kids(self) -> Counter[str]:
        return Counter(v.kid for v in self.verified.values())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def pem_body_lines(pem_text: str) -> list[str]:
    """The base64 lines of every PEM block (what a leaked private key would show)."""
    return [
        line.strip()
        for line in pem_text.splitlines()
        if line.strip() and not line.startswith("-----") and len(line.strip()) >= 16
    ]
