"""W&B never holds a run up: online mode against a server that cannot be reached (a closed
port), one that accepts connections but never answers, and one that goes silent mid-run.
Real wandb, real CLI; only the server is a stand-in, on this machine.

Measured with wandb 0.31's defaults (README, "W&B server unreachable"): `wandb.init` gave up on
a closed port after 100 s (two 5 s account look-ups, then init_timeout=90 s), and `wandb.finish` waited
until killed (90 s) once the server went silent. Here each bound is a few seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnbench.errors import ConfigError
from conftest import compose, records_under, run_cli
from wandb_log import summary_and_run

BOUND = 2  # logger.init_timeout and logger.finish_timeout in these tests, seconds
# What a run may take beyond the same run offline: the bound, plus a wide margin for a busy CI
# machine (~1.7 s beyond it measured on 2 cores, idle). These bound a hang, not a speed: wandb's
# own defaults took 100 s at the start and forever at the end.
SLACK = 25


def online_env(url: str, tmp_path: Path) -> dict:
    return {
        "WANDB_MODE": "online",
        "WANDB_BASE_URL": url,
        "WANDB_API_KEY": "0" * 40,  # a well-formed key; no server here checks it
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),  # not the user's settings
        "WANDB_SILENT": "false",  # as users run it (silent, wandb's login skips its account look-up)
        # wandb's own error reporting posts to the same server once more when the process exits
        # (not part of the run: up to ~20 s measured against a silent server); off here
        "WANDB_ERROR_REPORTING": "false",
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connections are refused


@pytest.fixture()
def silent_server():
    """A port that accepts connections and reads, but never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    sock.close()


@pytest.fixture()
def server_that_goes_silent():
    """A stand-in W&B server that lets a run start (answers the resume query and the run's
    creation), then answers nothing more: the server went away mid-run."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            op = json.loads(body).get("operationName") if body.startswith(b"{") else None
            if op == "RunResumeStatus":
                data = {"model": None}  # no such run yet
            elif op == "UpsertBucket":
                data = {"upsertBucket": {"inserted": True, "bucket": {
                    "id": "QnVja2V0OjE=", "name": "r", "displayName": "r", "description": "", "config": "{}",
                    "sweepName": None, "historyLineCount": 0,
                    "project": {"id": "UHJvamVjdDox", "name": "bnbench", "entity": {"id": "RW50aXR5OjE=", "name": "e"}},
                }}}
            else:
                stop.wait()  # silent from here on
                return
            out = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_PUT = do_GET = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def offline_wall(tiny_data, tmp_path_factory) -> float:
    """The same run's wall time offline (the CLI alone takes ~8 s on a 2-core machine)."""
    where = tmp_path_factory.mktemp("offline")
    t0 = time.monotonic()
    proc = run_cli("train", f"data.root={tiny_data}", "trainer.max_steps=20", "run.eval_every=10", cwd=where)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - t0


def train(tiny_data: Path, tmp_path: Path, url: str, *overrides: str):
    t0 = time.monotonic()
    proc = run_cli("train", f"data.root={tiny_data}", "trainer.max_steps=20", "run.eval_every=10",
                   f"logger.init_timeout={BOUND}", f"logger.finish_timeout={BOUND}", *overrides,
                   cwd=tmp_path, env=online_env(url, tmp_path), timeout=180)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("server", ["closed", pytest.param("silent", marks=pytest.mark.slow)])  # silent: make test-faults
def test_an_unreachable_server_gives_an_offline_run_by_default(server, tiny_data, tmp_path, request, offline_wall):
    url = f"http://127.0.0.1:{closed_port()}" if server == "closed" else request.getfixturevalue("silent_server")
    proc, wall = train(tiny_data, tmp_path, url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wall < offline_wall + BOUND + SLACK, (wall, offline_wall)
    (path,) = records_under(tmp_path / "results")
    assert json.loads(path.read_text())["status"] == "completed"
    (run_file,) = (tmp_path / "outputs").rglob("offline-run-*/*.wandb")
    summary, run = summary_and_run(run_file)
    assert summary["status"] == "completed" and run["exit_code"] == 0
    # one WARNING line: what failed, where, and how to upload the offline run later
    output = proc.stdout + proc.stderr
    (warning,) = [line for line in output.splitlines() if "[WARNING]" in line and "W&B" in line]
    for text in (url, f"logger.init_timeout={BOUND}s", "logging offline instead",
                 f"wandb sync {run_file.parent}"):
        assert text in warning, (text, warning)


def test_an_unreachable_server_with_on_unreachable_fail_stops_in_one_line(tiny_data, tmp_path, offline_wall):
    url = f"http://127.0.0.1:{closed_port()}"
    proc, wall = train(tiny_data, tmp_path, url, "logger.on_unreachable=fail")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert wall < offline_wall + BOUND + SLACK, (wall, offline_wall)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bnbench: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for text in (f"server {url}", f"logger.init_timeout={BOUND}s", "logger.on_unreachable=fail"):
        assert text in errors[0], (text, errors[0])
    # stopped before training: no record, no offline run
    assert not records_under(tmp_path)
    assert not list(tmp_path.rglob("offline-run-*"))


@pytest.mark.slow  # 8-22 s; make test-faults runs it
def test_on_unreachable_fail_is_one_line_from_a_two_process_run_too(tiny_data, tmp_path):
    """Rank 0 meets the error inside its worker process; the job still ends with the one line."""
    url = f"http://127.0.0.1:{closed_port()}"
    proc, _ = train(tiny_data, tmp_path, url, "logger.on_unreachable=fail", "trainer=ddp", "trainer.devices=2",
                    "trainer.accelerator=cpu", "experiment=mnist_bn")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bnbench: error:")]
    assert len(errors) == 1 and "logger.on_unreachable=fail" in errors[0], proc.stderr[-3000:]
    assert "rank 0 of 2 exited" not in proc.stderr and not records_under(tmp_path)


@pytest.mark.slow  # 8-22 s; make test-faults runs it
def test_a_server_gone_silent_mid_run_holds_its_end_at_most_finish_timeout(tiny_data, tmp_path, offline_wall,
                                                                           server_that_goes_silent):
    proc, wall = train(tiny_data, tmp_path, server_that_goes_silent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wall < offline_wall + BOUND + SLACK, (wall, offline_wall)
    assert "Timed out finishing run" in proc.stderr  # wandb's own warning when finish_timeout expires
    (path,) = records_under(tmp_path / "results")
    assert json.loads(path.read_text())["status"] == "completed"
    # an online run (not offline): what was not uploaded stays on disk for `wandb sync`
    (run_file,) = (tmp_path / "outputs").rglob("wandb/run-*/*.wandb")
    summary, run = summary_and_run(run_file)
    assert summary["status"] == "completed" and run["exit_code"] == 0


def test_the_bounds_are_in_the_schema():
    from bnbench.preflight import check_config

    cfg = compose([])
    assert OmegaConf.to_container(cfg.logger, enum_to_str=True) | {"mode": None} == {
        "kind": "wandb", "project": "bnbench", "entity": None, "mode": None, "tags": [],
        "init_timeout": 30.0, "on_unreachable": "offline", "finish_timeout": 60.0}
    with pytest.raises(ConfigError, match=r"logger.init_timeout must be > 0"):
        check_config(compose(["logger.init_timeout=0"]))
    check_config(compose(["logger.finish_timeout=null", "logger.on_unreachable=fail"]))
    with pytest.raises(Exception, match="on_unreachable"):
        compose(["logger.on_unreachable=retry"])
