"""Fault drills against the real TorchServe 0.12.0 and the image's own entrypoint, run on this machine.

Usage:

    .venv/bin/python bench/drills.py [--spec SPEC] [--drills kill,sigterm,bad-model,soak] [--soak-minutes 30]

  kill       SIGKILL the model's worker process under load (8 clients): requests lost, seconds until the new
             worker is READY and until requests succeed again, and nothing hung (every request ended within
             its client timeout). TorchServe restarts the worker itself; torchship_worker_starts counts it.
  sigterm    the image's entrypoint (image/runtime/entrypoint.py, run here as in the image: the baked
             config, the model store, TMPDIR, no container) under load gets SIGTERM. As in a cluster after the
             preStop sleep, the load balancer sends no new requests once the signal is sent; a late client
             keeps trying. Requests in flight at the signal must all answer 200, TorchServe must stop within
             the grace period, and the late client's requests must end in an answer or a refused connection,
             never hang.
  bad-model  the same entrypoint with a .mar whose compiled model is corrupted: the image's readiness probe
             (`probe ready`) never passes within the startup budget, and the reason is in the logs. (Undoing the
             rollout is `torchship deploy`'s: tests/test_deploy.py runs kubectl against a rollout that never
             gets ready.)
  soak       an open-loop load at 70% of the capacity measured first (16 clients, closed loop) for
             --soak-minutes; the workers' and the frontend's RSS and the latency every 10 s; after a warm-up
             (the first fifth, at least a minute), the least-squares drift per hour. A leak fails the drill:
             workers' RSS growing more than LEAK_MB_PER_HOUR.

Prints a summary and writes bench/results/drills-<timestamp>.json and drills-latest.json. On a shared
machine the load shares the cores with TorchServe: the figures are for this machine at that moment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from torchship.serving.ports import HOST, free_ports  # noqa: E402
from torchship.serving.torchserve import TorchServe  # noqa: E402
from torchship.settings import Settings  # noqa: E402

CLIENT_TIMEOUT_S = 30.0  # a request that takes longer counts as hung
LEAK_MB_PER_HOUR = 50.0  # workers' RSS growth after warm-up that fails the soak
SOAK_SHARE = 0.7
SAMPLE_EVERY_S = 10.0
BODY = {"text": "TorchServe batches requests and scales workers."}


# --- load ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    status: str  # the HTTP status, or the transport error's class name

    @property
    def ok(self) -> bool:
        return self.status == "200"

    @property
    def hung(self) -> bool:
        return self.status in ("ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectTimeout")


@dataclass
class Load:
    """Closed-loop clients in a thread of their own until stop() (or until `starting` says no more)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 8
    keepalive: bool = True
    timeout_s: float = CLIENT_TIMEOUT_S
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        assert self._thread is not None
        # Each client ends within its timeout: a join that outlasts it means something hung in the client.
        self._thread.join(timeout=self.timeout_s + 10)
        if self._thread.is_alive():
            raise RuntimeError("the load's clients did not stop within their timeout")
        return self.outcomes

    async def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=self.concurrency if self.keepalive else 0)
        body = json.dumps(BODY).encode()
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout_s, limits=limits) as client:

            async def one_client() -> None:
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        response = await client.post(
                            self.url, content=body, headers={"content-type": "application/json"}
                        )
                        status = str(response.status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                        await asyncio.sleep(0.05)  # a refused connection returns at once: do not spin
                    self.outcomes.append(Outcome(started, time.monotonic(), status))

            await asyncio.gather(*(one_client() for _ in range(self.concurrency)))


def by_status(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if not var:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var * 3600


# --- TorchServe's processes ----------------------------------------------------------------------


def workers(management_url: str, name: str, token: str | None) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{management_url}/models/{name}", headers=headers, timeout=10)
    return response.json()[0].get("workers", []) if response.status_code == 200 else []


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def frontend_pid(server: TorchServe) -> int | None:
    """The Java frontend TorchServe's launcher started (its pid file under the server's TMPDIR)."""
    assert server.workdir is not None
    with contextlib.suppress(OSError, ValueError):
        return int((server.workdir / "tmp" / ".model_server.pid").read_text().strip())
    return None


def metric_value(metrics_url: str, name: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


# --- the drills ----------------------------------------------------------------------------------


def kill_drill(
    mar: Path, name: str, settings: Settings, client_timeout_s: float, load_s: float = 3.0
) -> dict[str, Any]:
    """SIGKILL the worker under load; TorchServe starts a new one. A request not answered within
    `client_timeout_s` (the bench: the spec's serve.response_timeout_s, TorchServe's own bound on an answer,
    plus 15 s) is hung."""
    with TorchServe({name: mar}, settings) as server:
        token = server.keys()["management"]
        load = Load(
            f"{server.inference_url}/predictions/{name}",
            {"Authorization": f"Bearer {server.inference_token}"},
            timeout_s=client_timeout_s,
        ).start()
        time.sleep(load_s)
        (old,) = workers(server.management_url, name, token)
        killed = time.monotonic()
        os.kill(int(old["pid"]), signal.SIGKILL)
        ready = None
        while time.monotonic() - killed < 120:
            current = workers(server.management_url, name, token)
            if current and current[0]["pid"] not in (old["pid"], -1) and current[0]["status"] == "READY":
                ready = time.monotonic()
                break
            time.sleep(0.1)
        time.sleep(load_s)  # the new worker under the same load
        outcomes = load.stop()
        assert server.ports is not None
        starts = metric_value(f"http://{HOST}:{server.ports.metrics}/metrics", "torchship_worker_starts")
    failed = [o for o in outcomes if not o.ok]
    # Served again: the first request sent after the kill that was answered 200.
    recovered = min((o.ended for o in outcomes if o.started > killed and o.ok), default=None)
    return {
        "requests": len(outcomes),
        "failed": len(failed),
        "by_status": by_status(outcomes),
        "hung": sum(o.hung for o in outcomes),
        "longest_request_s": max(o.ended - o.started for o in outcomes),
        "client_timeout_s": load.timeout_s,
        "failed_waited_s": sorted(round(o.ended - o.started, 2) for o in failed),
        "worker_ready_s": None if ready is None else ready - killed,
        "recovered_s": None if recovered is None else recovered - killed,
        "worker_starts": starts,
        "ok": ready is not None and recovered is not None and not any(o.hung for o in outcomes),
    }


@dataclass
class ImageLike:
    """The image's entrypoint run on this machine: /opt/torchship's files in a temporary root."""

    mar: Path
    name: str
    spec: Any
    drain_timeout_s: float = 10.0
    stop_timeout_s: float = 20.0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="torchship-drill-image-")))
    process: subprocess.Popen | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> ImageLike:
        from torchship.image.context import IMAGE_ROOT, render_config
        from torchship.serving.config import render_log_config
        from torchship.serving.metrics_config import FILE_NAME as METRICS_CONFIG
        from torchship.serving.metrics_config import render_metrics_config

        store = self.root / "model-store"
        store.mkdir(parents=True)
        shutil.copy2(self.mar, store / f"{self.name}.mar")
        # The baked config with /opt/torchship moved to this root (TorchServe reads the paths from it).
        config = (
            render_config(self.spec, "1g")
            .replace("-Djava.io.tmpdir=/tmp ", f"-Djava.io.tmpdir={self.root}/tmp ")
            .replace(IMAGE_ROOT, str(self.root))
        )
        (self.root / "config.properties").write_text(config)
        (self.root / "log4j2.xml").write_text(render_log_config(False))
        (self.root / METRICS_CONFIG).write_text(render_metrics_config())
        for d in ("tmp", "logs"):
            (self.root / d).mkdir()
        keys = ("INFERENCE", "MANAGEMENT", "METRICS", "GRPC_INFERENCE", "GRPC_MANAGEMENT")
        self.ports = dict(zip(keys, free_ports(len(keys)), strict=True))
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.root),
            "TORCHSHIP_CONFIG": str(self.root / "config.properties"),
            "TORCHSHIP_MODEL_STORE": str(store),
            "TORCHSHIP_MODEL_NAME": self.name,
            "TORCHSHIP_BIND_ADDRESS": HOST,
            **{f"TORCHSHIP_{key}_PORT": str(port) for key, port in self.ports.items()},
            "TMPDIR": str(self.root / "tmp"),
            "LOG_LOCATION": str(self.root / "logs"),
            "TORCHSHIP_DRAIN_TIMEOUT_S": str(self.drain_timeout_s),
            "TORCHSHIP_STOP_TIMEOUT_S": str(self.stop_timeout_s),
            "OMP_NUM_THREADS": "1",
            **({"JAVA_HOME": os.environ["JAVA_HOME"]} if "JAVA_HOME" in os.environ else {}),
        }
        self.env = env
        entrypoint = REPO / "src" / "torchship" / "image" / "runtime" / "entrypoint.py"
        with (self.root / "entrypoint.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(entrypoint)], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.ports['INFERENCE']}/predictions/{self.name}"

    def probe(self, check: str) -> tuple[bool, str]:
        probe = REPO / "src" / "torchship" / "image" / "runtime" / "probe.py"
        done = subprocess.run(
            [sys.executable, str(probe), check], env=self.env, capture_output=True, text=True, timeout=30
        )
        return done.returncode == 0, done.stdout.strip()

    def wait_ready(self, budget_s: float) -> tuple[float | None, str]:
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < budget_s:
            assert self.process is not None
            if self.process.poll() is not None:
                return None, f"entrypoint exited with {self.process.returncode}"
            ok, last = self.probe("ready")
            if ok:
                return time.monotonic() - started, last
            time.sleep(1.0)
        return None, last

    def log_text(self) -> str:
        texts = [(self.root / "entrypoint.log").read_text(errors="replace")]
        for path in sorted((self.root / "logs").glob("*.log")):
            texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def sigterm_drill(
    mar: Path, name: str, spec: Any, load_s: float = 4.0, drain_timeout_s: float = 10.0
) -> dict[str, Any]:
    """SIGTERM to the image's entrypoint under load: in-flight requests finish, then it stops cleanly."""
    image = ImageLike(mar, name, spec, drain_timeout_s=drain_timeout_s).start()
    try:
        ready_s, why = image.wait_ready(180)
        if ready_s is None:
            raise RuntimeError(f"the entrypoint never got ready: {why}\n{image.log_text()[-2000:]}")
        # No keep-alive: the entrypoint's drain counts open connections (an idle keep-alive one holds it).
        load = Load(image.url, concurrency=8, keepalive=False).start()
        time.sleep(load_s)
        assert image.process is not None
        image.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        load._stop.set()  # the endpoints dropped the pod: no new requests from the balanced clients
        late = Load(image.url, concurrency=1, keepalive=False).start()  # a client that still has the address
        code = image.process.wait(timeout=image.stop_timeout_s + 15)
        stopped = time.monotonic()
        time.sleep(1.0)  # the late client now meets a closed port
        late_outcomes = late.stop()
        outcomes = load.stop()
        logs = image.log_text()
    finally:
        image.stop()
    in_flight = [o for o in outcomes if o.started < signalled]
    after_stop = [o for o in late_outcomes if o.started > stopped]
    return {
        "requests_before_signal": len(in_flight),
        "in_flight_at_signal": sum(o.ended > signalled for o in in_flight),
        "in_flight_failed": sum(not o.ok for o in in_flight),
        "by_status": by_status(outcomes),
        "late_client": by_status(late_outcomes),
        "late_after_stop_refused": sum(o.status == "ConnectError" for o in after_stop),
        "late_after_stop": len(after_stop),
        "late_longest_s": max((o.ended - o.started for o in late_outcomes), default=0.0),
        "hung": sum(o.hung for o in outcomes + late_outcomes),
        "stop_s": stopped - signalled,
        "exit_code": code,
        "grace_s": image.stop_timeout_s,
        "entrypoint_log": [line for line in logs.splitlines() if "torchship-entrypoint" in line],
        "ok": code == 0
        and not any(not o.ok for o in in_flight)
        and stopped - signalled < image.stop_timeout_s
        and not any(o.hung for o in outcomes + late_outcomes),
    }


def corrupt_mar(mar: Path, target: Path) -> str:
    """A copy of `mar` whose compiled model file (compiled.json's `file`) is garbage; the name replaced."""
    with zipfile.ZipFile(mar) as source:
        manifest = next(n for n in source.namelist() if n.endswith("compiled.json"))
        compiled = json.loads(source.read(manifest))
        if "file" not in compiled:
            raise RuntimeError(f"{manifest} names no model file: {compiled}")
        victim = str(Path(manifest).parent / compiled["file"])
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            for info in source.infolist():
                data = source.read(info)
                out.writestr(
                    info, b"not a model: corrupted by bench/drills.py\n" if info.filename == victim else data
                )
    return victim


def model_errors(logs: str) -> list[str]:
    """The worker's exceptions, as TorchServe logs its stdout/stderr lines (MODEL_LOG - ...), once each."""
    return list(
        dict.fromkeys(
            line.split("MODEL_LOG - ", 1)[-1].strip()
            for line in logs.splitlines()
            if re.search(r"MODEL_LOG - [A-Za-z_.]*(Error|Exception): ", line)
        )
    )


def bad_model_drill(
    mar: Path, name: str, spec: Any, budget_s: float = 60.0, enough_failed_probes: int | None = None
) -> dict[str, Any]:
    """A .mar whose compiled model is corrupted: readiness never passes, the reason is in the logs.
    `enough_failed_probes`: stop once that many probes failed and the logs name an exception (tests)."""
    with tempfile.TemporaryDirectory(prefix="torchship-drill-bad-") as tmp:
        bad = Path(tmp) / f"{name}.mar"
        victim = corrupt_mar(mar, bad)
        image = ImageLike(bad, name, spec).start()
        started = time.monotonic()
        probes: list[str] = []
        ever_ready = False
        try:
            while time.monotonic() - started < budget_s:
                ok, message = image.probe("ready")
                probes.append(message)
                ever_ready |= ok
                if (
                    enough_failed_probes
                    and len(probes) >= enough_failed_probes
                    and model_errors(image.log_text())
                ):
                    break
                time.sleep(1.0)
            logs = image.log_text()
        finally:
            image.stop()
    telling = model_errors(logs)
    return {
        "corrupted_file": victim,
        "watched_s": time.monotonic() - started,
        "probes": len(probes),
        "ever_ready": ever_ready,
        "last_probe": probes[-1] if probes else None,
        "load_attempts_logged": sum(bool(telling) and telling[0] in line for line in logs.splitlines()),
        "telling_log_lines": telling[:5],
        "ok": not ever_ready and bool(telling),
    }


def measure_capacity(url: str, token: str, seconds: float = 20.0) -> float:
    """Requests/s at 16 closed-loop clients (tune's concurrency)."""
    load = Load(url, {"Authorization": f"Bearer {token}"}, concurrency=16).start()
    time.sleep(3.0)
    mark = len(load.outcomes)
    begun = time.monotonic()
    time.sleep(seconds)
    done = len(load.outcomes) - mark
    elapsed = time.monotonic() - begun
    load.stop()
    return done / elapsed


def soak_drill(
    mar: Path, name: str, settings: Settings, minutes: float, capacity_s: float = 20.0
) -> dict[str, Any]:
    """70% of the measured capacity, open loop, for `minutes`; RSS and latency drift per hour."""
    with TorchServe({name: mar}, settings) as server:
        token = server.keys()["management"]
        url = f"{server.inference_url}/predictions/{name}"
        capacity = measure_capacity(url, server.inference_token, capacity_s)
        rate = SOAK_SHARE * capacity
        samples: list[dict[str, Any]] = []
        latencies: list[tuple[float, float, str]] = []  # (ended, seconds, status)
        stop = threading.Event()

        async def open_loop() -> None:
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {server.inference_token}"}, timeout=CLIENT_TIMEOUT_S
            ) as client:
                body = json.dumps(BODY).encode()
                pending: set[asyncio.Task] = set()

                async def one() -> None:
                    started = time.monotonic()
                    try:
                        response = await client.post(
                            url, content=body, headers={"content-type": "application/json"}
                        )
                        status = str(response.status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    latencies.append((time.monotonic(), time.monotonic() - started, status))

                next_at = time.monotonic()
                while not stop.is_set():
                    next_at += 1.0 / rate
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    task = asyncio.create_task(one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.gather(*pending)

        thread = threading.Thread(target=lambda: asyncio.run(open_loop()), daemon=True)
        begun = time.monotonic()
        thread.start()
        java = frontend_pid(server)
        pids = [int(w["pid"]) for w in workers(server.management_url, name, token)]
        while time.monotonic() - begun < minutes * 60:
            time.sleep(SAMPLE_EVERY_S)
            now = time.monotonic()
            window = [s for end, s, status in latencies if end > now - SAMPLE_EVERY_S and status == "200"]
            current = [int(w["pid"]) for w in workers(server.management_url, name, token)]
            samples.append({
                "t_s": now - begun,
                "workers_rss_mb": sum(rss_mb(p) or 0.0 for p in current),
                "frontend_rss_mb": rss_mb(java) if java else None,
                "p50_ms": None if not window else 1000 * statistics.median(window),
                "p95_ms": None if not window else 1000 * (percentile(window, 0.95) or 0.0),
                "requests": len(window),
                "worker_pids": current,
            })  # fmt: skip
        stop.set()
        thread.join(timeout=CLIENT_TIMEOUT_S + 10)
    warmup_s = max(60.0, minutes * 60 / 5)
    steady = [s for s in samples if s["t_s"] >= warmup_s] or samples
    failed = sum(status != "200" for _, _, status in latencies)
    rss_drift = slope_per_hour([(s["t_s"], s["workers_rss_mb"]) for s in steady])
    frontend_drift = slope_per_hour(
        [(s["t_s"], s["frontend_rss_mb"]) for s in steady if s["frontend_rss_mb"]]
    )
    p50_drift = slope_per_hour([(s["t_s"], s["p50_ms"]) for s in steady if s["p50_ms"] is not None])
    p95_drift = slope_per_hour([(s["t_s"], s["p95_ms"]) for s in steady if s["p95_ms"] is not None])
    restarted = any(s["worker_pids"] != pids for s in samples)
    return {
        "minutes": minutes,
        "capacity_rps": capacity,
        "rate_rps": rate,
        "requests": len(latencies),
        "failed": failed,
        "achieved_rps": len(latencies) / (minutes * 60),
        "warmup_s": warmup_s,
        "workers_rss_mb_start": steady[0]["workers_rss_mb"] if steady else None,
        "workers_rss_mb_end": steady[-1]["workers_rss_mb"] if steady else None,
        "workers_rss_drift_mb_per_hour": rss_drift,
        "frontend_rss_drift_mb_per_hour": frontend_drift,
        "p50_drift_ms_per_hour": p50_drift,
        "p95_drift_ms_per_hour": p95_drift,
        "leak_threshold_mb_per_hour": LEAK_MB_PER_HOUR,
        "worker_restarted": restarted,
        "samples": samples,
        "ok": rss_drift <= LEAK_MB_PER_HOUR and failed == 0 and not restarted,
    }


# --- main ----------------------------------------------------------------------------------------


def package(spec_path: Path, settings: Settings):
    sys.path.insert(0, str(REPO / "bench"))
    from minilm_heads import packaged

    return packaged(spec_path, settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, default=DEMO_SPEC)
    parser.add_argument("--drills", default="kill,sigterm,bad-model,soak")
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument("--prefix", default="drills")
    args = parser.parse_args()
    settings = Settings()
    spec, mar = package(args.spec, settings)
    chosen = args.drills.split(",")
    result: dict[str, Any] = {
        "spec": str(args.spec.relative_to(REPO) if args.spec.is_relative_to(REPO) else args.spec),
        "model": spec.name,
        "serve": {"workers": spec.serve.workers, "batch_size": spec.serve.batch_size},
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "drills": {},
    }
    runs = {
        "kill": lambda: kill_drill(mar, spec.name, settings, spec.serve.response_timeout_s + 15),
        "sigterm": lambda: sigterm_drill(mar, spec.name, spec),
        "bad-model": lambda: bad_model_drill(mar, spec.name, spec),
        "soak": lambda: soak_drill(mar, spec.name, settings, args.soak_minutes),
    }
    for drill in chosen:
        print(f"{drill} …", flush=True)
        started = time.monotonic()
        outcome = runs[drill]()
        outcome["drill_s"] = time.monotonic() - started
        result["drills"][drill] = outcome
        summary = {
            k: v for k, v in outcome.items() if k not in ("samples", "entrypoint_log", "telling_log_lines")
        }
        print(f"  {json.dumps(summary)}", flush=True)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["ok"] = all(d["ok"] for d in result["drills"].values())
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{args.prefix}-{stamp}.json", f"{args.prefix}-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS / f'{args.prefix}-{stamp}.json'}; all drills ok: {result['ok']}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
