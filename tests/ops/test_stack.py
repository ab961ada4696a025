"""The stack's production profile: what it configures and which processes it starts (no processes run here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ops.stack import (
    EMBEDDED_EXECUTOR,
    ROOT,
    S3_CONN_ID,
    StackConfig,
    accounts_from_environment,
    embedded_parallelism,
    environment,
    local_production_config,
    process_environment,
    process_specs,
    worker_hostname,
)


def production(tmp_path: Path) -> StackConfig:
    return local_production_config(
        tmp_path, "bb_42", "postgresql+psycopg2://postgres@127.0.0.1:5432", "redis://127.0.0.1:6379/0", s3_port=9000
    )


def test_embedded_profile_is_unchanged_by_the_production_fields(tmp_path):
    env = environment(StackConfig(var_dir=tmp_path))
    assert env["AIRFLOW__CORE__EXECUTOR"] == EMBEDDED_EXECUTOR
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert "BITBUDDIES_DATABASE_URL" not in env and "BITBUDDIES_STORAGE_URL" not in env
    assert not any(name.startswith("worker-") for name in process_specs(StackConfig(var_dir=tmp_path)))


def test_embedded_workers_are_sized_to_the_machine(tmp_path):
    # 4 task processes per core, never fewer than 4 nor more than Airflow's default of 32.
    assert [embedded_parallelism(n) for n in (1, 2, 4, 16)] == [4, 8, 16, 32]
    assert environment(StackConfig(var_dir=tmp_path))["AIRFLOW__CORE__PARALLELISM"] == str(embedded_parallelism())
    assert environment(StackConfig(var_dir=tmp_path, parallelism=3))["AIRFLOW__CORE__PARALLELISM"] == "3"


def test_production_profile_uses_postgres_celery_and_s3(tmp_path):
    cfg = production(tmp_path)
    env = environment(cfg)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "bitbuddies_airflow.celery_executor.RecoveringCeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/bb_42_airflow"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://postgres@127.0.0.1:5432/bb_42_airflow"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "bb_42_"
    assert env["BITBUDDIES_DATABASE_URL"].endswith("/bb_42_app")
    # Tasks in flight never exceed the workers' slots, so queued-too-long means lost (40 s).
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(cfg.default_worker_concurrency + cfg.media_worker_concurrency)
    assert env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] == "40"
    assert env["BITBUDDIES_STORAGE_URL"] == f"s3://{S3_CONN_ID}@bitbuddies/assets"
    conn = json.loads(env[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"])
    assert conn["conn_type"] == "aws" and conn["extra"]["endpoint_url"] == env["BITBUDDIES_S3_ENDPOINT_URL"] == cfg.s3_url


def test_production_profile_starts_one_worker_per_queue_and_an_s3_server(tmp_path):
    specs = process_specs(production(tmp_path))
    queues = {name: argv[argv.index("--queues") + 1] for name, argv in specs.items() if name.startswith("worker-")}
    assert queues == {"worker-default": "default", "worker-media": "media"}
    assert specs["s3"][1:3] == ["-m", "moto.server"]
    cfg = production(tmp_path)
    assert process_environment(cfg, "worker-media", specs["worker-media"])["BITBUDDIES_WORKER_HOSTNAME"] == "worker-media"
    assert "BITBUDDIES_WORKER_HOSTNAME" not in process_environment(cfg, "scheduler", specs["scheduler"])


def test_secrets_are_defined_once_the_api_gets_settings_and_airflow_connections(tmp_path):
    cfg = StackConfig(var_dir=tmp_path, api_port=8123, stripe_api_key="sk_test_1", stripe_webhook_secret="whsec_1",
                      stripe_api_base="http://127.0.0.1:9999", printful_api_key="pf_1", printful_api_url="http://127.0.0.1:9998",
                      printful_sticker_variant_id=7)
    specs = process_specs(cfg)
    api = process_environment(cfg, "api", specs["api"])
    worker = process_environment(cfg, "scheduler", specs["scheduler"])
    triggerer = process_environment(cfg, "triggerer", specs["triggerer"])
    assert worker == triggerer
    # The API: its settings, and no Airflow connection.
    assert api["STRIPE_API_KEY"] == "sk_test_1" and api["STRIPE_WEBHOOK_SECRET"] == "whsec_1"
    assert api["BITBUDDIES_STRIPE_API_BASE"] == "http://127.0.0.1:9999" and api["BITBUDDIES_PRINTFUL_API_KEY"] == "pf_1"
    assert not any(name.startswith("AIRFLOW_CONN_") for name in api)
    # Airflow: the same values as connections, and none of the API's variables.
    assert not any(name.startswith(("STRIPE_", "BITBUDDIES_")) for name in worker)
    stripe = json.loads(worker["AIRFLOW_CONN_BITBUDDIES_STRIPE"])
    assert stripe["password"] == "sk_test_1" and stripe["extra"] == {"api_base": "http://127.0.0.1:9999"}
    printful = json.loads(worker["AIRFLOW_CONN_BITBUDDIES_PRINTFUL"])
    assert printful["password"] == "pf_1" and printful["host"] == "http://127.0.0.1:9998"
    internal = json.loads(worker["AIRFLOW_CONN_BITBUDDIES_API"])
    assert internal["password"] == api["BITBUDDIES_INTERNAL_TOKEN"] == (tmp_path / "internal_token").read_text().strip()
    assert internal["port"] == 8123
    # The model server gets no secret; the common environment names the vendor but holds no key.
    assert process_environment(cfg, "model-server", specs["model-server"]) == {}
    common = environment(cfg)
    assert common["BITBUDDIES_PRINT_VENDOR"] == "printful" and common["BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID"] == "7"
    assert "sk_test_1" not in json.dumps(common) and "pf_1" not in json.dumps(common)


def test_without_accounts_only_the_internal_token_is_handed_out(tmp_path):
    cfg = StackConfig(var_dir=tmp_path)
    specs = process_specs(cfg)
    assert set(process_environment(cfg, "api", specs["api"])) == {"BITBUDDIES_INTERNAL_TOKEN"}
    assert set(process_environment(cfg, "dag-processor", specs["dag-processor"])) == {"AIRFLOW_CONN_BITBUDDIES_API"}


def test_worker_hostname_is_the_celery_name_when_set(monkeypatch):
    monkeypatch.setenv("BITBUDDIES_WORKER_HOSTNAME", "worker-media")
    assert worker_hostname() == "worker-media"
    monkeypatch.delenv("BITBUDDIES_WORKER_HOSTNAME")
    assert worker_hostname()  # the machine's name


def test_no_log_server_beside_the_scheduler(tmp_path):
    # Task logs are files on this machine, read by the api-server directly.
    assert process_specs(StackConfig(var_dir=tmp_path))["scheduler"][1:] == ["scheduler", "--skip-serve-logs"]


def test_the_triggerer_runs_airflow_triggerer_with_its_imports_frozen(tmp_path):
    argv = process_specs(StackConfig(var_dir=tmp_path))["triggerer"]
    assert argv[1:] == ["-m", "ops.triggerer", "--skip-serve-logs"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-m", "ops.triggerer", "--help"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "airflow triggerer" in shown.stdout and "--capacity" in shown.stdout


def test_the_model_connection_reaches_every_process_in_the_environment(tmp_path):
    from airflow.models.connection import Connection

    cfg = StackConfig(var_dir=tmp_path, model_server_port=8765)
    raw = environment(cfg)["AIRFLOW_CONN_BITBUDDIES_MODELS"]
    conn = Connection.from_json(raw, conn_id="bitbuddies_models")
    assert (conn.conn_type, conn.host, conn.port, conn.schema) == ("http", "127.0.0.1", 8765, "http")
    assert conn.extra_dejson == {"models": {}}
    # A stack given another provider (a test's fal-speaking server) keeps it.
    fal = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "password": "key"})
    cfg = StackConfig(var_dir=tmp_path, extra_env={"AIRFLOW_CONN_BITBUDDIES_MODELS": fal})
    assert environment(cfg)["AIRFLOW_CONN_BITBUDDIES_MODELS"] == fal


def test_make_up_takes_stripe_and_printful_from_the_callers_environment_into_the_config(tmp_path, monkeypatch):
    found = accounts_from_environment({"STRIPE_API_KEY": "sk_test_2", "STRIPE_WEBHOOK_SECRET": "whsec_2",
                                       "BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID": "12", "UNRELATED": "x"})
    assert found == {"stripe_api_key": "sk_test_2", "stripe_webhook_secret": "whsec_2", "printful_sticker_variant_id": 12}
    # Inherited Stripe variables never reach every process: only the config hands them out.
    monkeypatch.setenv("STRIPE_API_KEY", "sk_inherited")
    cfg = StackConfig(var_dir=tmp_path, **found)
    assert "STRIPE_API_KEY" not in environment(cfg)
    assert process_environment(cfg, "api", process_specs(cfg)["api"])["STRIPE_API_KEY"] == "sk_test_2"


def test_the_embedded_airflow_db_waits_for_locks_and_is_in_wal_mode(tmp_path):
    import sqlite3

    from bitbuddies_airflow.sqlite import CONNECT_ARGS

    from ops import stack

    env = stack.environment(stack.StackConfig(var_dir=tmp_path))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == "bitbuddies_airflow.sqlite.CONNECT_ARGS"
    assert CONNECT_ARGS["timeout"] > 5  # sqlite3's default: a writer gave up after 5 s
    production_env = stack.environment(production(tmp_path))
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in production_env  # psycopg2 takes no such arguments
    db = tmp_path / "airflow.db"
    sqlite3.connect(db).execute("create table t (x)").connection.close()
    assert stack.use_wal(db) == "wal" and stack.use_wal(db) == "wal"  # idempotent
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
