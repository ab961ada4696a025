"""docker-compose.yaml, .env.example and the Dockerfile agree with the code (Docker cannot run here).

Checked: the file parses and names the production topology; every service built from the image
runs a command that exists in it (Airflow subcommands and options through Airflow's own CLI parser
configured as the service is, ``python -m`` modules, the Celery app of health checks); every
variable a service sets is read by someone (an option in Airflow's configuration including the
providers', a field of ``include.settings.Settings``, a connection, a name the project's code
reads, or a documented variable of the third-party image); every ``${VAR}`` is documented in
.env.example and every documented one is used; dependencies name real services; the Dockerfile
copies what exists.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "bitbuddies:latest"
# Variables the third-party images document and read themselves.
IMAGE_VARIABLES = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "redis": {"REDIS_PASSWORD"},  # read by the health check's shell, see the service
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
}
TOPOLOGY = {
    "postgres", "redis", "minio", "init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
    "airflow-triggerer", "worker-default", "worker-media", "api", "model-server",
}  # fmt: skip
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, with a stand-in for empty secrets."""

    def one(match: re.Match) -> str:
        name, op, arg = match.groups()
        given = variables.get(name, "")
        if given:
            return given
        return arg if op in (":-", "-") else f"x-{name.lower()}"

    return _INTERPOLATION.sub(one, value).replace("$$", "$")


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key repeated in one mapping, as Docker Compose does (PyYAML keeps
    the last value silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor" merges, it is no key
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str):
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_unique(COMPOSE.read_text())


def test_the_loader_refuses_a_repeated_key():
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'A'"):
        load_unique("x:\n  A: 1\n  B: 2\n  A: 3\n")
    assert load_unique("base: &b {A: 1}\nx:\n  <<: *b\n  B: 2\n")["x"] == {"A": 1, "B": 2}


def test_airflow_needs_a_fernet_key_and_the_api_signs_in_as_its_own_user(compose):
    env = compose["x-bitbuddies-env"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == "${AIRFLOW_FERNET_KEY:?set in .env}"
    assert env["BITBUDDIES_AIRFLOW_USERNAME"] == "bitbuddies-api"
    assert "ADMIN" not in env["BITBUDDIES_AIRFLOW_PASSWORD"]


def image_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == IMAGE}


def argv(command, variables: dict[str, str]) -> list[str]:
    if isinstance(command, str):
        command = shlex.split(command)
    return [interpolate(str(part), variables) for part in command]


def service_env(service: dict, variables: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(str(v), variables) for k, v in (service.get("environment") or {}).items()}


def test_compose_parses_and_has_the_production_topology(compose):
    assert set(compose["services"]) >= TOPOLOGY
    built = image_services(compose)
    assert set(built) >= TOPOLOGY - set(IMAGE_VARIABLES)
    assert all(svc.get("build") == "." for svc in built.values()), "one image, built from the repo"
    for name, svc in compose["services"].items():
        for dependency in svc.get("depends_on") or {}:
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
        if svc.get("restart") != "no":
            assert "healthcheck" in svc, f"{name} has no health check"


def test_every_variable_is_documented_and_every_documented_one_is_used():
    text = COMPOSE.read_text()
    used = {m.group(1) for m in _INTERPOLATION.finditer(text)}
    documented = set(env_example())
    assert used - documented == set(), "used in docker-compose.yaml but not in .env.example"
    assert documented - used == set(), "in .env.example but never used"


def test_secrets_are_required_not_defaulted():
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_KEY", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD", "INTERNAL_TOKEN"):
        assert f"${{{secret}:?" in text, f"{secret} must be required (${{{secret}:?...}})"
        assert f"${{{secret}:-" not in text, f"{secret} must have no default"
        assert env_example()[secret] == "", f"{secret} must be empty in .env.example"


def test_the_media_worker_consumes_only_the_media_queue(compose):
    variables = env_example()
    default = argv(compose["services"]["worker-default"]["command"], variables)
    media = argv(compose["services"]["worker-media"]["command"], variables)
    assert default[default.index("--queues") + 1] == "default"
    assert media[media.index("--queues") + 1] == "media"
    dag = (ROOT / "dags" / "generate_buddy.py").read_text()
    assert 'MEDIA_QUEUE = "media"' in dag and "queue=MEDIA_QUEUE" in dag


# Run inside a subprocess with a service's environment, as the container would: Airflow builds
# its CLI and configuration from the executor, auth manager and providers configured there.
_PROBE = r"""
import importlib, importlib.util, json, sys
checks = json.loads(sys.argv[1])
problems = []
from airflow.configuration import conf
conf.load_providers_configuration()
from airflow.cli.cli_parser import get_parser
from include.settings import Settings
fields = {f.upper() for f in Settings.model_fields}
for argv in checks["airflow"]:
    try:
        get_parser().parse_args(argv[1:])
    except SystemExit as exc:
        problems.append(f"not an airflow command of the image: {argv} ({exc})")
for module in checks["modules"]:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        problems.append(f"no module {module}")
for path in checks["objects"]:
    module, _, attr = path.rpartition(".")
    try:
        found = hasattr(importlib.import_module(module), attr)
    except ImportError:
        found = False
    if not found:
        problems.append(f"no object {path}")
for name in checks["variables"]:
    if name.startswith("AIRFLOW__"):
        section, _, key = name[len("AIRFLOW__"):].lower().partition("__")
        # OPTION_CMD / OPTION_SECRET are Airflow's ways to give OPTION; transport options pass through to kombu.
        known = conf.has_option(section, key) or any(
            key.endswith(s) and conf.has_option(section, key.removesuffix(s)) for s in ("_cmd", "_secret")
        )
        if not (known or section == "celery_broker_transport_options"):
            problems.append(f"{name}: no option [{section}] {key} in Airflow's configuration")
    elif name.startswith("BITBUDDIES_") and name[len("BITBUDDIES_"):] not in fields:
        problems.append(f"{name}: not a field of include.settings.Settings")
print(json.dumps(problems))
"""


def probe(env: dict[str, str], checks: dict) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(checks)],
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def python_sources() -> str:
    return "\n".join(p.read_text() for folder in ("api", "include", "model_server", "ops", "plugins", "dags") for p in (ROOT / folder).rglob("*.py"))


def test_every_command_exists_and_every_variable_is_read(compose, tmp_path):
    variables = env_example()
    sources = python_sources()
    problems = []
    # One probe for all services (an Airflow start costs seconds): they share the Airflow
    # configuration; service-specific additions are app settings or init-only names.
    all_env: dict[str, str] = {}
    checks = {"airflow": [], "modules": [], "objects": [], "variables": []}
    for name, svc in image_services(compose).items():
        env = service_env(svc, variables)
        for var, value in env.items():
            all_env.setdefault(var, value)
        commands = [argv(svc["command"], variables)]
        health = (svc.get("healthcheck") or {}).get("test") or []
        if health and health[0] == "CMD":
            commands.append(argv(health[1:], variables))
        elif health and health[0] == "CMD-SHELL":
            commands.append(argv(health[1], variables))
        checks["variables"] += sorted(set(env) - set(checks["variables"]))
        for command in commands:
            if command[0] == "airflow":
                checks["airflow"].append(command)
            elif command[:2] == ["python", "-m"]:
                checks["modules"].append(command[2])
                if command[2] == "uvicorn":
                    module, _, attr = command[3].partition(":")
                    checks["modules"].append(module)
                    checks["objects"].append(f"{module}.{attr}")
            elif command[0] == "celery":
                checks["objects"].append(command[command.index("--app") + 1])
            elif command[0] == "curl":
                assert "curl" in DOCKERFILE.read_text(), "curl is used by health checks but not installed"
            else:
                problems.append(f"{name}: unknown command {command}")
        for var in env:
            if not var.startswith(("AIRFLOW__", "BITBUDDIES_", "AIRFLOW_CONN_")) and var not in sources:
                problems.append(f"{name}: {var} is read by nothing in the project")
    all_env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    problems += probe(all_env, checks)
    for name, allowed in IMAGE_VARIABLES.items():
        extra = set(compose["services"][name].get("environment") or {}) - allowed
        assert not extra, f"{name} sets variables its image does not read: {extra}"
    assert problems == []


def test_connections_in_variables_are_valid_json(compose):
    variables = env_example()
    for name, svc in image_services(compose).items():
        for var, value in service_env(svc, variables).items():
            if var.startswith("AIRFLOW_CONN_"):
                conn = json.loads(value)
                assert conn["conn_type"] in ("http", "aws", "generic"), (name, var)
    storage = service_env(compose["services"]["api"], variables)["BITBUDDIES_STORAGE_URL"]
    conn_id = re.match(r"s3://([^@]+)@", storage).group(1)
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in service_env(compose["services"]["worker-media"], variables)


def test_dockerfile_copies_what_exists_and_installs_the_lock():
    text = DOCKERFILE.read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert "--require-hashes -r requirements.txt" in text and "--require-hashes --no-deps -r requirements-nodeps.txt" in text
    assert "requirements-dev" not in text, "the image installs the runtime lock only"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", ".env"} <= set(ignored)


AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "worker-default", "worker-media")
# Secrets as the API's settings and the same values as Airflow's connections: (setting, connection, field).
SHARED_SECRETS = [
    ("BITBUDDIES_INTERNAL_TOKEN", "bitbuddies_api", "password"),
    ("STRIPE_API_KEY", "bitbuddies_stripe", "password"),
    ("BITBUDDIES_PRINTFUL_API_KEY", "bitbuddies_printful", "password"),
    ("BITBUDDIES_PRINTFUL_API_URL", "bitbuddies_printful", "host"),
]


def test_airflow_gets_every_connection_the_dags_read_and_the_api_its_settings_with_the_same_values(compose):
    """Every Airflow process (the DAGs' tasks, callbacks and triggers run in all of them) defines the
    connections the plugin's hooks read; the API gets the same secrets as settings; neither gets the
    other's copy."""
    from bitbuddies_airflow.hooks import API_CONN_ID, DEFAULT_CONN_ID, PRINTFUL_CONN_ID, STRIPE_CONN_ID

    # Distinct values for every secret, so a connection fed from the wrong variable shows.
    variables = env_example() | {name: f"probe-{name.lower()}" for name in ("INTERNAL_TOKEN", "STRIPE_API_KEY", "PRINTFUL_API_KEY")}
    variables["PRINTFUL_API_URL"] = "https://printful.probe"
    needed = {DEFAULT_CONN_ID, API_CONN_ID, STRIPE_CONN_ID, PRINTFUL_CONN_ID, "bitbuddies_s3"}
    api = service_env(compose["services"]["api"], variables)
    for _, conn_id, _ in SHARED_SECRETS:
        assert f"AIRFLOW_CONN_{conn_id.upper()}" not in api, f"the API reads its settings, not Airflow's {conn_id}"
    for name in AIRFLOW_SERVICES:
        env = service_env(compose["services"][name], variables)
        connections = {var.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value) for var, value in env.items() if var.startswith("AIRFLOW_CONN_")}
        assert needed <= set(connections), f"{name} lacks {needed - set(connections)}"
        for setting, conn_id, field in SHARED_SECRETS:
            assert setting not in env, f"{name} has the API's {setting}"
            assert connections[conn_id][field] == api[setting], f"{name}: {conn_id}.{field} is not the API's {setting}"
        assert connections[API_CONN_ID]["host"] == "api" and connections[API_CONN_ID]["port"] == 8000
    assert "STRIPE_WEBHOOK_SECRET" in api  # the webhook is the API's alone
