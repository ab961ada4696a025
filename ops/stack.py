"""The platform's processes on one machine: configure, initialise, start, wait, stop.

`make up` and the end-to-end tests both use this module, so the tests run exactly what a
developer runs: Airflow's api-server, scheduler, dag-processor and triggerer (SQLite metadata DB,
LocalExecutor), the local model server and the FastAPI app. Everything lives under one
``var_dir``; ports are parameters so a test stack can run beside a developer's. The four Airflow
services are forked from one process that imported Airflow once (``ops/forkserver.py``: they
share those pages; ``BITBUDDIES_FORK_SERVICES=0`` starts them as separate programs).

``profile="production"`` runs the production configuration natively (what docker-compose.yaml
deploys across machines): Postgres for Airflow's metadata and the app DB, CeleryExecutor with a
Redis broker and the Postgres result backend, two Celery workers on the ``default`` and
``media`` queues, and S3 storage through an S3-compatible server (moto's server mode here,
MinIO or AWS in a deployment) reached through the Airflow connection ``bitbuddies_s3``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from include.settings import read_or_create_secret
from ops.airflow_roles import API_USER, SIMPLE_AUTH_API_ROLE, SIMPLE_AUTH_MANAGER

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AIRFLOW_USER = "admin"
# Per-user limits for tests and benchmarks, where one user drives dozens of generations and
# a thousand streams on purpose (the product's limits are the settings' defaults).
LOAD_TEST_LIMITS = {
    "BITBUDDIES_LIMIT_GENERATIONS_IN_FLIGHT": "1000",
    "BITBUDDIES_LIMIT_UPLOADS_PER_MINUTE": "10000",
    "BITBUDDIES_LIMIT_EVENT_STREAMS": "10000",
    "BITBUDDIES_LIMIT_STICKER_ORDERS_PER_DAY": "1000",
}


@dataclass
class StackConfig:
    var_dir: Path = ROOT / "var"
    airflow_port: int = 8080
    api_port: int = 8000
    model_server_port: int = 8200
    model_workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    # "embedded" (SQLite, LocalExecutor, file storage) or "production" (the fields below).
    profile: str = "embedded"
    airflow_db_url: str = ""  # postgresql+psycopg2://user@host:port/db
    app_db_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix for every broker key, so stacks sharing one Redis never see each other's queues.
    redis_key_prefix: str = ""
    s3_port: int = 0  # the S3-compatible server this stack starts (moto)
    s3_bucket: str = "bitbuddies"
    default_worker_concurrency: int = 8
    media_worker_concurrency: int = 2
    # LocalExecutor worker processes (embedded profile); 0: sized to the machine (embedded_parallelism).
    parallelism: int = 0
    # Outside services' accounts (secret_environments): Stripe pays (no key: orders_dev_autopay),
    # Printful prints (no key: the local outbox). api_base / api_url point at fakes in tests.
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    printful_api_key: str = ""
    printful_api_url: str = "https://api.printful.com"
    printful_sticker_variant_id: int = 0
    # Fork Airflow's services from one process that imported Airflow once (ops/forkserver.py):
    # embedded profile only; BITBUDDIES_FORK_SERVICES=0 starts them as separate programs.
    fork_services: bool = field(default_factory=lambda: os.environ.get("BITBUDDIES_FORK_SERVICES", "1") != "0")

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def airflow_home(self) -> Path:
        return self.var_dir / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def model_server_url(self) -> str:
        return f"http://127.0.0.1:{self.model_server_port}"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "logs"


# LocalExecutor that retries at once what a dead worker held (plugins/bitbuddies_airflow/executor.py).
EMBEDDED_EXECUTOR = "bitbuddies_airflow.executor.RecoveringLocalExecutor"
# CeleryExecutor that requeues a task queued past task_queued_timeout only when no live worker
# holds it (plugins/bitbuddies_airflow/celery_executor.py): a slow start on a loaded machine is
# waited for, a dead worker's task is rescheduled.
PRODUCTION_EXECUTOR = "bitbuddies_airflow.celery_executor.RecoveringCeleryExecutor"
# The production workers' Celery configuration (Airflow's default plus the task processes' preload).
CELERY_CONFIG = "bitbuddies_airflow.celery_config.CELERY_CONFIG"
# The embedded profile's SQLite connections (plugins/bitbuddies_airflow/sqlite.py).
SQLITE_CONNECT_ARGS = "bitbuddies_airflow.sqlite.CONNECT_ARGS"
# Backstops for a task lost where no process exit reveals it (a hung worker, a worker orphaned by a
# dead scheduler): each state is noticed within timeout + check interval (45 s), retried after the
# DAG's 2 s retry delay, so a lost stage runs again within 60 s. A crashed scheduler's queued tasks
# are reset once its job is 30 s without heartbeat (scheduler_health_check_threshold), checked
# every 15 s instead of every 300. Heartbeats go every 5 s, so a task
# is declared lost after 8 missed ones. task_queued_timeout is also the lifetime of a queued task's
# Execution API token (refreshed on every heartbeat once it runs); a LocalExecutor task is queued
# for the seconds its worker takes to start it (parallelism = workers).
RECOVERY_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "40",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "40",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
}


def embedded_parallelism(cpus: int | None = None) -> int:
    """How many task processes the embedded profile runs at once: 4 per core, 4 to 32.

    The LocalExecutor forks all of its workers when it starts and keeps them, idle or not (~10 MB
    PSS each), so Airflow's default of 32 held ~330 MB on a 2-core machine for slots it could never
    use: a task process is CPU-bound while it runs (start-up, callbacks, a model job's first
    seconds), waits are deferred to the triggerer and hold no slot, so more runnable task
    processes than 4 per core only queue for the CPU. Measured in ``bench/bench_speed.py``.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(4, min(32, 4 * cpus))


def _secret(path: Path) -> str:
    """A secret generated once per var_dir and kept there, readable by its owner only (0600)."""
    return read_or_create_secret(path)


def airflow_password_file(cfg: StackConfig) -> Path:
    """Where the operator's Airflow password (user ``admin``) is kept."""
    return cfg.airflow_home / "admin_password"


def airflow_password(cfg: StackConfig) -> str:
    return _secret(airflow_password_file(cfg))


def api_airflow_password(cfg: StackConfig) -> str:
    """The API's own Airflow user's password (``bitbuddies-api``, ops/airflow_roles.py)."""
    return _secret(cfg.airflow_home / "api_password")


def environment(cfg: StackConfig) -> dict[str, str]:
    """The environment every process of the stack runs with."""
    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    password = airflow_password(cfg)
    passwords_file = home / "simple_auth_manager_passwords.json"
    descriptor = os.open(passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({AIRFLOW_USER: password, API_USER: api_airflow_password(cfg)}, out)
    os.chmod(passwords_file, 0o600)  # also when it existed before with a wider mode
    # Only this stack's configuration: nothing inherited from the caller's Airflow or app settings
    # (Stripe's keys reach the stack through its config: accounts_from_environment).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BITBUDDIES_", "STRIPE_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": EMBEDDED_EXECUTOR,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism or embedded_parallelism()),
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            # SimpleAuthManager, where the API's own user may read and trigger the two BitBuddies DAGs and
            # not pause them (ops/airflow_roles.py); the operator is admin.
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin,{API_USER}:{SIMPLE_AUTH_API_ROLE}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.airflow_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # Wait up to 30 s for another process's write lock (sqlite3 gives up after 5 s); the
            # file is in WAL mode (initialise): plugins/bitbuddies_airflow/sqlite.py.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": SQLITE_CONNECT_ARGS,
            "AIRFLOW__API__PORT": str(cfg.airflow_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": cfg.airflow_url,
            "AIRFLOW__API__SECRET_KEY": _secret(home / "api_secret"),
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / "jwt_secret"),
            # Orchestration settings (measured in bench/bench_speed.py):
            # - the scheduler loop: Airflow's defaults give ~0.9 s between tasks, this ~0.35 s (NOTES.md);
            # - the DAG files: a new file is found within 10 s and a changed one is parsed again at once
            #   (file_parsing_sort_mode modified_time), so unchanged files need no re-parse every 30 s:
            #   each parse is a process importing Airflow and the DAG (~1 CPU s on 2 cores), which the
            #   dag-processor otherwise spent on four unchanged files every 30 s, idle or not;
            # - heartbeats and lost-task detection: RECOVERY_SETTINGS above.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.05",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
            "AIRFLOW__TRIGGERER__DEFAULT_CAPACITY": "1000",
            **RECOVERY_SETTINGS,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # The app's own settings, shared by the API, the model server and the tasks.
            "BITBUDDIES_VAR_DIR": str(cfg.var_dir),
            "BITBUDDIES_API_PORT": str(cfg.api_port),
            "BITBUDDIES_PUBLIC_BASE_URL": cfg.api_url,
            "BITBUDDIES_AIRFLOW_URL": cfg.airflow_url,
            "BITBUDDIES_AIRFLOW_USERNAME": API_USER,
            "BITBUDDIES_AIRFLOW_PASSWORD": api_airflow_password(cfg),
            "BITBUDDIES_MODEL_SERVER_PORT": str(cfg.model_server_port),
            "BITBUDDIES_MODEL_SERVER_WORKERS": str(cfg.model_workers),
            # No Stripe on a developer's machine: sticker orders are marked paid at once, logged as
            # such (a stack given stripe_api_key pays through Stripe instead).
            "BITBUDDIES_ORDERS_DEV_AUTOPAY": "true",
            # The local print outbox is a file read: poll it often so moved jobs show up quickly.
            "BITBUDDIES_PRINT_POLL_SECONDS": "3",
        }
    )
    env.update(connection_environment(cfg))
    if cfg.printful_api_key:
        env.update({"BITBUDDIES_PRINT_VENDOR": "printful", "BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID": str(cfg.printful_sticker_variant_id)})
    if cfg.production:
        env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS")  # SQLite's: Postgres takes none of them
        env.update(production_environment(cfg))
    env.update(cfg.extra_env)
    return env


def connection_environment(cfg: StackConfig) -> dict[str, str]:
    """The Airflow connections of ``config/connections.json`` as ``AIRFLOW_CONN_*`` variables, as
    docker-compose.yaml sets them. A connection found in the environment is found without asking
    anyone: the triggerer's runner otherwise asks its supervisor for it, which then builds an
    in-process Execution API (~90 MB) to read it from the metadata DB."""
    connections = json.loads((ROOT / "config" / "connections.json").read_text())
    # The model server's port is a stack parameter; everything else comes from the file as kept.
    connections["bitbuddies_models"]["port"] = cfg.model_server_port
    env = {}
    for conn_id, fields in connections.items():
        if isinstance(fields.get("extra"), str):
            fields["extra"] = json.loads(fields["extra"])
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
    return env


def accounts_from_environment(environ: dict[str, str] | None = None) -> dict[str, object]:
    """StackConfig's Stripe and Printful fields from the caller's environment (the API's variable
    names), for `make up`: a developer who exports STRIPE_API_KEY pays through Stripe."""
    environ = os.environ if environ is None else environ
    names = {
        "stripe_api_key": "STRIPE_API_KEY", "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
        "stripe_api_base": "BITBUDDIES_STRIPE_API_BASE", "printful_api_key": "BITBUDDIES_PRINTFUL_API_KEY",
        "printful_api_url": "BITBUDDIES_PRINTFUL_API_URL", "printful_sticker_variant_id": "BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID",
    }  # fmt: skip
    found: dict[str, object] = {field: environ[name] for field, name in names.items() if environ.get(name)}
    if "printful_sticker_variant_id" in found:
        found["printful_sticker_variant_id"] = int(found["printful_sticker_variant_id"])
    return found


# The processes that read secrets from their settings (the web app and API) and those that run
# no BitBuddies code with secrets at all; every other process of the stack is an Airflow one.
SETTINGS_PROCESSES = {"api"}
NO_SECRET_PROCESSES = {"model-server", "s3"}


def secret_environments(cfg: StackConfig) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's secrets, defined once and handed out twice: (the API's settings, Airflow's
    connections). The internal token is generated once per var_dir (var_dir/internal_token, as the
    settings do in development); Stripe and Printful come from the config when given.

    The API reads ``STRIPE_API_KEY``, ``BITBUDDIES_INTERNAL_TOKEN``, ...; Airflow's processes the
    connections ``bitbuddies_api``, ``bitbuddies_stripe`` and ``bitbuddies_printful``
    (plugins/bitbuddies_airflow/hooks.py); neither gets the other's copy (process_environment)."""
    token = _secret(cfg.var_dir / "internal_token")
    api = {"BITBUDDIES_INTERNAL_TOKEN": token}
    conns = {"bitbuddies_api": {"conn_type": "http", "schema": "http", "host": "127.0.0.1", "port": cfg.api_port, "password": token}}
    if cfg.stripe_api_key:
        api |= {"STRIPE_API_KEY": cfg.stripe_api_key, "STRIPE_WEBHOOK_SECRET": cfg.stripe_webhook_secret}
        api |= {"BITBUDDIES_STRIPE_API_BASE": cfg.stripe_api_base} if cfg.stripe_api_base else {}
        conns["bitbuddies_stripe"] = {"conn_type": "generic", "password": cfg.stripe_api_key}
        if cfg.stripe_api_base:
            conns["bitbuddies_stripe"]["extra"] = {"api_base": cfg.stripe_api_base}
    if cfg.printful_api_key:
        api |= {"BITBUDDIES_PRINTFUL_API_URL": cfg.printful_api_url, "BITBUDDIES_PRINTFUL_API_KEY": cfg.printful_api_key}
        conns["bitbuddies_printful"] = {"conn_type": "http", "host": cfg.printful_api_url, "password": cfg.printful_api_key}
    return api, {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in conns.items()}


S3_CONN_ID = "bitbuddies_s3"
# moto accepts any key pair; a deployment sets real ones (.env.example).
S3_ACCESS_KEY = "bitbuddies"
S3_SECRET_KEY = "bitbuddies-secret"
S3_REGION = "us-east-1"


def production_environment(cfg: StackConfig) -> dict[str, str]:
    """What the production profile changes: databases, executor, broker, storage."""
    result_backend = "db+" + cfg.airflow_db_url  # Celery's SQLAlchemy backend, same driver
    s3_connection = {
        "conn_type": "aws",
        "login": S3_ACCESS_KEY,
        "password": S3_SECRET_KEY,
        "extra": {"endpoint_url": cfg.s3_url, "region_name": S3_REGION},
    }
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cfg.airflow_db_url,
        "AIRFLOW__CORE__EXECUTOR": PRODUCTION_EXECUTOR,
        # As many tasks in flight as the workers have slots: a task then waits for a slot as
        # `scheduled`, not `queued` in the broker, and a task `queued` past task_queued_timeout was
        # lost by its worker (killed between receiving and starting it), not merely waiting.
        "AIRFLOW__CORE__PARALLELISM": str(cfg.default_worker_concurrency + cfg.media_worker_concurrency),
        "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        # Workers load the DAG files' imports once, before forking (plugins/bitbuddies_airflow/preload.py).
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
        # Tasks record the worker's name (several workers share this machine's hostname).
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ops.stack.worker_hostname",
        f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(s3_connection),
        "BITBUDDIES_DATABASE_URL": cfg.app_db_url,
        "BITBUDDIES_STORAGE_URL": f"s3://{S3_CONN_ID}@{cfg.s3_bucket}/assets",
        "BITBUDDIES_S3_ENDPOINT_URL": cfg.s3_url,
        "BITBUDDIES_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "BITBUDDIES_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "BITBUDDIES_S3_REGION": S3_REGION,
        # Every API process counts a user's limits in the same place (keys under the stack's prefix).
        "BITBUDDIES_LIMITS_STORAGE_URL": cfg.redis_url,
        "BITBUDDIES_LIMITS_KEY_PREFIX": f"{cfg.redis_key_prefix}LIMITS",
    } | ({"AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": cfg.redis_key_prefix} if cfg.redis_key_prefix else {})


def local_production_config(var_dir: Path, tag: str, postgres_server_url: str, redis_url: str, **ports) -> StackConfig:
    """A production-profile stack on this machine's Postgres and Redis, private to ``tag``.

    Its databases (``{tag}_airflow``, ``{tag}_app``) and Redis keys (prefix ``{tag}_``) belong to
    it alone, so test sessions and benchmarks can run side by side; ``discard_production_data``
    removes them.
    """
    return StackConfig(
        var_dir=var_dir,
        profile="production",
        airflow_db_url=f"{postgres_server_url}/{tag}_airflow",
        app_db_url=f"{postgres_server_url}/{tag}_app",
        redis_url=redis_url,
        redis_key_prefix=f"{tag}_",
        **ports,
    )


def discard_production_data(cfg: StackConfig) -> None:
    """Drop the stack's databases and broker keys (after ``Stack.stop``)."""
    import redis

    from include.db import drop_database

    drop_database(cfg.airflow_db_url)
    drop_database(cfg.app_db_url)
    if cfg.redis_key_prefix:
        client = redis.Redis.from_url(cfg.redis_url)
        try:
            for key in client.scan_iter(match=f"{cfg.redis_key_prefix}*", count=500):
                client.delete(key)
        finally:
            client.close()


WORKER_HOSTNAME_ENV = "BITBUDDIES_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for workers: the Celery worker's name when one is set.

    In a deployment each worker is its own machine or container and this is its host name.
    """
    from airflow.utils.net import getfqdn

    return os.environ.get(WORKER_HOSTNAME_ENV) or getfqdn()


def ensure_bucket(cfg: StackConfig) -> None:
    """Create the storage bucket on the stack's S3 server (idempotent)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=cfg.s3_url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if cfg.s3_bucket not in existing:
        client.create_bucket(Bucket=cfg.s3_bucket)


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def use_wal(db_path: Path) -> str:
    """Put a SQLite file in write-ahead-log mode (kept in the file; idempotent): its readers and a
    writer no longer block each other (plugins/bitbuddies_airflow/sqlite.py). Returns the mode."""
    connection = sqlite3.connect(str(db_path), timeout=30)
    try:
        return connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        connection.close()


def initialise(cfg: StackConfig) -> None:
    """Idempotent set-up: Airflow metadata DB, pools from config/, the app DB (the connections are
    in the environment: connection_environment)."""
    env = environment(cfg)
    airflow = str(VENV_BIN / "airflow")
    if cfg.production:
        from include.db import create_database

        create_database(cfg.airflow_db_url)
        create_database(cfg.app_db_url)
    _run([airflow, "db", "migrate"], env, "airflow db migrate")
    if not cfg.production:
        use_wal(cfg.airflow_home / "airflow.db")
    _run([airflow, "pools", "import", str(ROOT / "config" / "pools.json")], env, "airflow pools import")
    _run([sys.executable, "-c", "from include.migrations import migrate; migrate()"], env, "app db init")


# The services a forkserver starts (ops/forkserver.py), when the stack has one.
FORKED_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def uses_forkserver(cfg: StackConfig) -> bool:
    return cfg.fork_services and not cfg.production


def process_specs(cfg: StackConfig) -> dict[str, list[str]]:
    airflow = str(VENV_BIN / "airflow")
    forkserver = {"forkserver": [sys.executable, "-m", "ops.forkserver"]} if uses_forkserver(cfg) else {}
    return forkserver | {
        "model-server": [sys.executable, "-m", "model_server"],
        "api-server": [airflow, "api-server", "--port", str(cfg.airflow_port), "--host", "127.0.0.1"],
        # Logs are on this machine's disk already, where the api-server reads them: no log server
        # beside the scheduler (~40 MB) or the triggerer (~100 MB).
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
        # ops/triggerer.py: `airflow triggerer` with its imports frozen for the GC.
        "triggerer": [sys.executable, "-m", "ops.triggerer", "--skip-serve-logs"],
        "api": [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(cfg.api_port)],
    } | (production_process_specs(cfg) if cfg.production else {})


def celery_worker_argv(queue: str, name: str, concurrency: int) -> list[str]:
    # Logs are on this machine's disk already: no log server (its fixed port would clash).
    return [
        str(VENV_BIN / "airflow"), "celery", "worker", "--queues", queue, "--concurrency", str(concurrency),
        "--celery-hostname", name, "--skip-serve-logs",
    ]  # fmt: skip


def production_process_specs(cfg: StackConfig) -> dict[str, list[str]]:
    return {
        # moto is in the development lock: the native production profile is for tests and benchmarks
        # (a deployment runs docker-compose.yaml with MinIO).
        "s3": [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(cfg.s3_port)],
        "worker-default": celery_worker_argv("default", "worker-default", cfg.default_worker_concurrency),
        "worker-media": celery_worker_argv("media", "worker-media", cfg.media_worker_concurrency),
    }


def process_environment(cfg: StackConfig, name: str, argv: list[str]) -> dict[str, str]:
    """Per-process additions to the stack's environment: the secrets the process reads (the API its
    settings, Airflow's processes their connections: secret_environments) and a Celery worker's name
    for its tasks."""
    api, airflow = secret_environments(cfg)
    env = api if name in SETTINGS_PROCESSES else {} if name in NO_SECRET_PROCESSES else dict(airflow)
    if "--celery-hostname" in argv:
        env[WORKER_HOSTNAME_ENV] = argv[argv.index("--celery-hostname") + 1]
    return env


class ForkServer:
    """The stack's side of ``ops/forkserver.py``: asks it for services, hears their exits."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.exits: dict[int, int] = {}
        self._replies: list[dict] = []
        self._pending = b""
        self._lock = threading.RLock()  # make up's supervisor polls from its own thread

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, argv: list[str], log: Path, timeout: float = 30) -> "ForkedService":
        with self._lock:
            self.proc.stdin.write((json.dumps({"argv": argv, "log": str(log)}) + "\n").encode())
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while not self._replies:
                if not self.alive() or time.monotonic() > deadline:
                    raise OSError(f"the forkserver did not start {argv[:2]}")
                self.collect(0.5)
            return ForkedService(self, self._replies.pop(0)["pid"], argv)

    def collect(self, timeout: float = 0) -> None:
        """Read what the forkserver reported (service pids, exits), waiting up to ``timeout``."""
        with self._lock:
            fd = self.proc.stdout.fileno()
            while select.select([fd], [], [], timeout)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._pending += chunk
                timeout = 0
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                message = json.loads(line)
                if "exited" in message:
                    self.exits[message["exited"]] = message["code"]
                else:
                    self._replies.append(message)


class ForkedService:
    """A service forked by the forkserver, with what the stack and the supervisor use of a ``Popen``."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self.server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.collect()
            if self.pid in self.server.exits:
                self.returncode = self.server.exits.pop(self.pid)
            elif not self.server.alive() and not _running(self.pid):
                self.returncode = 1  # the forkserver died first: its exit code is lost
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            if self.server.alive():
                self.server.collect(0.1)
            else:
                time.sleep(0.1)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (not gone, not a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Stack:
    """The running processes; each in its own process group so stopping it stops its children."""

    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        self.env = environment(cfg)
        self.procs: dict[str, subprocess.Popen | ForkedService] = {}
        self.forkserver: ForkServer | None = None

    def start(self, names: list[str] | None = None) -> None:
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in process_specs(self.cfg).items():
            if names is None or name in names:
                self.start_one(name, argv)

    def start_one(self, name: str, argv: list[str] | None = None) -> subprocess.Popen:
        argv = argv or process_specs(self.cfg)[name]
        log_path = self.cfg.log_dir / f"{name}.log"
        if name in FORKED_SERVICES and self.forkserver is not None and self.forkserver.alive():
            proc = self.forkserver.spawn(argv, log_path)
            self.procs[name] = proc
            return proc
        log = open(log_path, "ab")
        env = self.env | process_environment(self.cfg, name, argv)
        if name == "forkserver":  # as the services it forks: Airflow's environment
            env = self.env | process_environment(self.cfg, FORKED_SERVICES[0], argv)
            proc = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
            self.forkserver = ForkServer(proc)
        else:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self) -> None:
        # The forkserver last: it reports the exits of the services it forked.
        forkserver = self.forkserver.proc if self.forkserver is not None else None
        self._stop_all([proc for proc in self.procs.values() if proc is not forkserver])
        if forkserver is not None:
            self._stop_all([forkserver])
        self.procs.clear()
        self.forkserver = None

    @staticmethod
    def _stop_all(procs: list) -> None:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        # Then whatever is left in each group: a service that exited on SIGTERM can leave task
        # processes behind (a task runner whose supervisor died waits forever, holding ~150 MB).
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.cfg.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait until every service answers and the generation DAG is parsed and unpaused."""
        checks = {
            "model-server": f"{self.cfg.model_server_url}/healthz",
            "api": f"{self.cfg.api_url}/docs",
            "api-server": f"{self.cfg.airflow_url}/api/v2/monitor/health",
            "s3": f"{self.cfg.s3_url}/moto-api/",
        }
        deadline = time.time() + timeout
        pending = {k: v for k, v in checks.items() if k in self.procs}
        while pending:
            self.check_alive()
            for name, url in list(pending.items()):
                try:
                    if httpx.get(url, timeout=2).status_code < 500:
                        pending.pop(name)
                except httpx.HTTPError:
                    pass
            if time.time() > deadline:
                raise TimeoutError(f"services not ready after {timeout} s: {sorted(pending)}")
            time.sleep(0.5)
        if "s3" in self.procs:
            ensure_bucket(self.cfg)
        if "api-server" in self.procs:
            from include.generations import GENERATE_DAG_ID
            from include.orders import ORDER_DAG_ID

            self.wait_for_dags([GENERATE_DAG_ID, ORDER_DAG_ID], deadline)

    def airflow_token(self) -> str:
        resp = httpx.post(
            f"{self.cfg.airflow_url}/auth/token",
            json={"username": AIRFLOW_USER, "password": airflow_password(self.cfg)},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()["access_token"]

    def wait_for_dags(self, dag_ids: list[str], deadline: float) -> None:
        headers = {"Authorization": f"Bearer {self.airflow_token()}"}
        for dag_id in dag_ids:
            while True:
                self.check_alive()
                try:
                    resp = httpx.get(f"{self.cfg.airflow_url}/api/v2/dags/{dag_id}", headers=headers, timeout=10)
                except httpx.TimeoutException:
                    # A busy api-server (one worker, a task start holding it) is not a dead one.
                    if time.time() > deadline:
                        raise
                    continue
                if resp.status_code == 200:
                    if resp.json().get("is_paused"):
                        httpx.patch(
                            f"{self.cfg.airflow_url}/api/v2/dags/{dag_id}",
                            json={"is_paused": False},
                            headers=headers,
                            timeout=10,
                        ).raise_for_status()
                    break
                if time.time() > deadline:
                    raise TimeoutError(f"DAG {dag_id} was not parsed in time")
                time.sleep(1)
