"""Command line of the recommendation service.

``python -m bentos serve``        start the service (foreground) on 127.0.0.1:3000
``python -m bentos replay``       replay the test window's sessions through the service
``python -m bentos build``        build a bento from ``bentos/bentofile.yaml`` (offline)
``python -m bentos versions``     list the model versions in the BentoML model store
``python -m bentos use-version V``  serve version ``V`` from the next start on
``python -m bentos rollback``     go back to the version served before the last switch
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import feature_repo  # noqa: F401  (telemetry off before anything else is imported)
from feature_repo.config import PROJECT_ROOT, Settings, load_settings
from feature_repo.logs import setup_logging

logger = logging.getLogger(__name__)

BENTOFILE = Path(__file__).resolve().parent / "bentofile.yaml"


def list_versions() -> list[str]:
    """Model versions (tags) in the BentoML model store, newest first."""
    from models.api import MODEL_NAME, bentoml_store, resolve_bentoml_home

    store = bentoml_store(resolve_bentoml_home(None))
    try:
        models = store.list(MODEL_NAME)
    except Exception:  # BentoML raises NotFound when the name was never stored
        logger.debug("no %s models in the store", MODEL_NAME, exc_info=True)
        return []
    models = sorted(models, key=lambda m: m.info.creation_time, reverse=True)
    return [str(m.tag) for m in models]


def _check_model(version: str | None) -> str:
    """Fail early, with the way out, when the model to serve is not in the store."""
    try:
        versions = list_versions()
    except Exception as exc:  # the models package reports its own problem
        raise SystemExit(f"cannot list model versions: {exc}") from exc
    if not versions:
        raise SystemExit(
            "no trained model in the BentoML model store "
            f"({os.environ.get('BENTOML_HOME', '~/bentoml')}).\nHint: run `make train` first."
        )
    if version is None:
        return versions[0]
    matches = [v for v in versions if v == version or v.split(":")[-1] == version]
    if not matches:
        raise SystemExit(
            f"model version {version!r} is not in the model store; versions: "
            f"{', '.join(versions[:10])}.\nHint: `python -m bentos versions` lists them all."
        )
    return matches[0]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.config import load_serve_config
    from bentos.process import SINGLE_THREAD, TELEMETRY_OFF, serve_command

    config = load_serve_config(settings)
    version = _check_model(args.model_version or config.model_version)
    env = {**SINGLE_THREAD, **os.environ, **TELEMETRY_OFF, "SHELFWISE_MODEL_VERSION": version}
    print(f"serving model {version} on http://{args.host}:{args.port}", flush=True)
    os.chdir(PROJECT_ROOT)
    os.execvpe(sys.executable, serve_command(args.port, host=args.host), env)
    return 0  # not reached


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.loadgen import open_loop
    from bentos.process import ServiceProcess
    from bentos.workload import window_requests

    bodies = window_requests(settings, k=args.k, max_requests=args.max_requests, seed=args.seed)
    server: ServiceProcess | None = None
    url = args.url
    if url is None:
        log_path = settings.paths.data_dir / "replay_service.log"
        print(f"starting the service (log: {log_path})", flush=True)
        env = {"SHELFWISE_DATA_DIR": str(settings.data_dir)}
        server = ServiceProcess(env=env, log_path=log_path).start()
        url = server.url
    try:
        started = time.perf_counter()
        result = open_loop(
            f"{url.rstrip('/')}/recommend",
            bodies,
            rate=args.rate,
            max_seconds=args.max_seconds,
        )
    finally:
        if server is not None:
            server.stop()
    print(
        json.dumps(
            {
                "requests": result.sent,
                "seconds": round(time.perf_counter() - started, 1),
                "statuses": result.statuses,
                "errors": result.errors,
                "fallbacks": result.fallbacks,
                "p50_ms": round(result.percentile(50), 1),
                "p95_ms": round(result.percentile(95), 1),
                "audit_log": str(settings.paths.audit_log),
            },
            indent=2,
        )
    )
    return 0 if result.errors == 0 else 1


def cmd_build(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.process import TELEMETRY_OFF

    env = {**os.environ, **TELEMETRY_OFF}
    command = [sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), str(PROJECT_ROOT)]
    if args.version:
        command += ["--version", args.version]
    print(" ".join(command), flush=True)
    return subprocess.call(command, cwd=PROJECT_ROOT, env=env)


def cmd_versions(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.config import read_pinned_version

    pinned = read_pinned_version(settings)
    versions = list_versions()
    if not versions:
        print("no model versions; run `make train`")
        return 1
    for i, version in enumerate(versions):
        marks = [m for m, on in (("latest", i == 0), ("pinned", version == pinned)) if on]
        print(f"{version}  {' '.join(marks)}".rstrip())
    return 0


def cmd_use_version(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.config import read_pinned_version, write_pinned_version

    current = read_pinned_version(settings)
    version = None if args.model_version == "latest" else _check_model(args.model_version)
    versions = list_versions()
    previous = current or (versions[0] if versions else None)
    path = write_pinned_version(settings, version, previous=previous)
    print(f"pinned {version or 'latest'} (was {previous or 'latest'}) in {path}")
    print("restart the service (`make serve`) for it to take effect")
    return 0


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from bentos.config import SERVING_PIN_FILE, read_pinned_version, write_pinned_version

    pin = settings.paths.data_dir / SERVING_PIN_FILE
    versions = list_versions()
    current = read_pinned_version(settings) or (versions[0] if versions else None)
    previous = json.loads(pin.read_text()).get("previous") if pin.exists() else None
    if previous is None or previous == current:
        # No switch recorded: go back to the version trained before the current one.
        older = versions[versions.index(current) + 1 :] if current in versions else []
        if not older:
            print(f"nothing to roll back to: {current} is the oldest version", file=sys.stderr)
            return 1
        previous = older[0]
    _check_model(previous)
    path = write_pinned_version(settings, previous, previous=current)
    print(f"rolled back to {previous} (from {current}) in {path}")
    print("restart the service (`make serve`) for it to take effect")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bentos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--data-dir", help="generated files (default $SHELFWISE_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the service in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--model-version", help="version to serve (default: pinned, else latest)")
    serve.set_defaults(func=cmd_serve)

    replay = sub.add_parser("replay", help="replay the test window through the service")
    replay.add_argument("--url", help="a running service (default: start one on a free port)")
    replay.add_argument("--rate", type=float, default=10.0, help="requests per second")
    replay.add_argument("--max-requests", type=int, default=600)
    replay.add_argument("--max-seconds", type=float, default=300.0)
    replay.add_argument("--k", type=int, default=10)
    replay.add_argument("--seed", type=int, default=0)
    replay.set_defaults(func=cmd_replay)

    build = sub.add_parser("build", help="build a bento (no network needed)")
    build.add_argument("--version", help="bento version (default: generated)")
    build.set_defaults(func=cmd_build)

    versions = sub.add_parser("versions", help="list model versions")
    versions.set_defaults(func=cmd_versions)

    use = sub.add_parser("use-version", help="pin the model version to serve")
    use.add_argument("model_version", help="a version, or 'latest' to unpin")
    use.set_defaults(func=cmd_use_version)

    rollback = sub.add_parser("rollback", help="pin the previously served version")
    rollback.set_defaults(func=cmd_rollback)

    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    return int(args.func(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
