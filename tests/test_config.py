"""Settings: layering, environment mapping and the wording of every configuration error."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import BaseModel, ValidationError

from conveyor.config import ConfigError, Settings, load_settings, parse_duration
from conveyor.durations import format_duration, parse_size
from conveyor.tasks import check_priority
from conveyor.vocabulary import HIGH_PRIORITY_MAX, MAX_PRIORITY, MIN_PRIORITY

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "0123456789abcdef-secret"


def write(tmp_path: Path, text: str, name: str = "conveyor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(**kwargs: Any) -> ConfigError:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return info.value


def only_issue(error: ConfigError) -> tuple[str, str, str]:
    assert len(error.errors) == 1, str(error)
    issue = error.errors[0]
    return issue.key, issue.source, issue.message


def section_models() -> dict[str, type[BaseModel]]:
    models = {}
    for name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            models[name] = info.annotation
    assert models, "no section models found"
    return models


def file_keys(model: type[BaseModel]) -> list[str]:
    return [
        info.validation_alias if isinstance(info.validation_alias, str) else name
        for name, info in model.model_fields.items()
    ]


# -- durations and sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1m30s", 90.0),
        ("1h0m5s", 3605.0),
        ("1.5h", 5400.0),
        ("500us", 0.0005),
        ("2µs", 0.000002),
        ("30", 30.0),
        ("0.5", 0.5),
        (" 2s ", 2.0),
        ("-1s", -1.0),
        ("0", 0.0),
        (45, 45.0),
        (0.02, 0.02),
    ],
)
def test_parse_duration_accepts_go_syntax_and_bare_seconds(
    text: str | float, seconds: float
) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1x", "1 m", "m", "1m30", "30S", "1M", "inf", "nan"])
def test_parse_duration_rejects_garbage_with_help(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, [1], float("inf")])
def test_parse_duration_rejects_non_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("seconds", [0.0, 0.02, 0.25, 1.0, 1.5, 90.0, 300.0, 3605.0, 604800.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_format_duration_is_short() -> None:
    assert [format_duration(s) for s in (0.02, 90, 300, 604800)] == ["20ms", "1m30s", "5m", "7d"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1MiB", 1048576),
        ("512KiB", 524288),
        ("1MB", 1000000),
        ("1 kb", 1000),
        ("1.5KiB", 1536),
        ("2048", 2048),
        (4096, 4096),
        ("1GiB", 1073741824),
        ("10B", 10),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0.5B", "1XB", "MiB", "-1KB", "1.5"])
def test_parse_size_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


# -- defaults ---------------------------------------------------------------------------


def test_settings_without_arguments_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "99")  # Settings() itself must never read the environment
    settings = Settings()
    assert settings.worker.count == 10
    assert settings.database.url == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert settings.database.schema_name == "conveyor"
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.redis.addr is None
    assert settings.queuer.backlog_poll_interval == 0.02
    assert settings.worker.queues == []
    assert settings.jobs.max_payload_bytes == 1048576
    assert settings.jobs.timeout is None
    assert settings.maintenance.retention == 7 * 86400
    assert settings.maintenance.dead_retention == 30 * 86400
    assert settings.health.port == 0
    assert settings.web.tokens == []
    assert settings.circuit_breaker.enabled is False
    assert settings.log.level == "info"
    assert settings == load_settings(env={})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.worker.count = 3


def test_queue_target_lookup_order() -> None:
    settings = Settings()
    assert settings.queue_target("email-sending", "high") == 60
    assert settings.queue_target("email-sending", "normal") == 300
    assert settings.queue_target("email-sending") == 300
    assert settings.queue_target("email-sending", "low") == 1800
    assert settings.queue_target("analytics:daily-aggregate") == 3600
    assert settings.queue_target("warmup:process", "high") == 900
    assert settings.queue_target("unlisted", "high") == 300


def test_queue_thresholds_fall_back_per_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        thresholds: {warning_waiting: 10, critical_waiting: 20, critical_failures_per_hour: 3}
        queues:
          billing: {critical_waiting: 500}
        """,
    )
    settings = load_settings(path, env={})
    assert settings.queue_thresholds("billing") == (10, 500, 3)
    assert settings.queue_thresholds("other") == (10, 20, 3)


def test_example_file_holds_every_key_at_its_default() -> None:
    example = ROOT / "conveyor.example.yaml"
    assert load_settings(example, env={}) == Settings()
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    models = section_models()
    assert set(data) == set(models) | {"queues", "schedules"}
    for section, model in models.items():
        assert sorted(data[section]) == sorted(file_keys(model)), section


def test_docs_name_every_environment_variable() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for section, model in section_models().items():
        for key in file_keys(model):
            assert f"`{section}.{key}`" in docs
            if (section, key) != ("web", "users"):
                assert f"{section}_{key}".upper() in docs, f"{section}.{key}"


# -- environment mapping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "path", "expected"),
    [
        ("WORKER_COUNT", "32", ("worker", "count"), 32),
        ("REDIS_KEY_PREFIX", "blue:", ("redis", "key_prefix"), "blue:"),
        ("REDIS__KEY_PREFIX", "blue:", ("redis", "key_prefix"), "blue:"),
        ("WORKER_SHUTDOWN_GRACE", "1m30s", ("worker", "shutdown_grace"), 90.0),
        ("CIRCUIT_BREAKER__COOLDOWN_PERIOD", "45s", ("circuit_breaker", "cooldown_period"), 45.0),
        ("CIRCUIT_BREAKER_ENABLED", "yes", ("circuit_breaker", "enabled"), True),
        ("DATABASE__SCHEMA", "blue", ("database", "schema_name"), "blue"),
        ("DATABASE_SCHEMA", "blue", ("database", "schema_name"), "blue"),
        ("DATABASE_URL", "postgresql://u@db/x", ("database", "url"), "postgresql://u@db/x"),
        ("REDIS_URL", "rediss://r:6380/2", ("redis", "url"), "rediss://r:6380/2"),
        ("CONVEYOR_WORKER_COUNT", "7", ("worker", "count"), 7),
        (
            "CONVEYOR_CIRCUIT_BREAKER__FAILURE_THRESHOLD",
            "9",
            ("circuit_breaker", "failure_threshold"),
            9,
        ),
        ("JOBS_MAX_PAYLOAD_BYTES", "512KiB", ("jobs", "max_payload_bytes"), 524288),
        ("JOBS_TIMEOUT", "10m", ("jobs", "timeout"), 600.0),
        ("JOBS_TIMEOUT", "", ("jobs", "timeout"), None),
        ("QUEUER_BACKLOG_POLL_INTERVAL", "20ms", ("queuer", "backlog_poll_interval"), 0.02),
        (
            "WORKER_QUEUES",
            "email, billing,,reports ",
            ("worker", "queues"),
            ["email", "billing", "reports"],
        ),
        ("WORKER_QUEUES", "", ("worker", "queues"), []),
        ("ENCRYPTION_FIELDS", "card,ssn", ("encryption", "fields"), ["card", "ssn"]),
        ("WORKER_LANE_ORDER", "Priority", ("worker", "lane_order"), "priority"),
        ("LOG_LEVEL", "WARNING", ("log", "level"), "warning"),
        ("WEB_SECURE_COOKIES", "always", ("web", "secure_cookies"), "always"),
        ("HEALTH_PORT", "9100", ("health", "port"), 9100),
    ],
)
def test_environment_variable_maps_to_setting(
    name: str, value: str, path: tuple[str, str], expected: Any
) -> None:
    env = {name: value}
    if name == "ENCRYPTION_FIELDS":  # listing fields without keys is refused on purpose
        env["ENCRYPTION_KEYS"] = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="
    settings = load_settings(env=env)
    assert getattr(getattr(settings, path[0]), path[1]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("TRUE", True),
        ("No", False),
    ],
)
def test_environment_booleans(text: str, expected: bool) -> None:
    assert load_settings(env={"RETRY_JITTER": text}).retry.jitter is expected


def test_prefixed_variable_wins_even_over_a_broken_bare_one() -> None:
    settings = load_settings(env={"WORKER_COUNT": "not a number", "CONVEYOR_WORKER_COUNT": "4"})
    assert settings.worker.count == 4


def test_redis_addr_replaces_host_and_port_only() -> None:
    env = {"REDIS_URL": "redis://:pw@old-host:6379/3", "REDIS_ADDR": "10.0.0.5:7000"}
    settings = load_settings(env=env)
    assert settings.redis.url == "redis://:pw@10.0.0.5:7000/3"
    assert settings.redis.addr == "10.0.0.5:7000"
    assert load_settings(env={"REDIS_ADDR": "[::1]:6380"}).redis.url == "redis://[::1]:6380/0"


@pytest.mark.parametrize(
    ("addr", "url", "words"),
    [
        ("no-port", "redis://h:1/0", "host:port"),
        ("h:99999", "redis://h:1/0", "host:port"),
        ("::1:6379", "redis://h:1/0", "brackets"),
        ("h:6379", "unix:///tmp/redis.sock", "unix://"),
    ],
)
def test_redis_addr_errors(addr: str, url: str, words: str) -> None:
    key, source, message = only_issue(error_of(env={"REDIS_ADDR": addr, "REDIS_URL": url}))
    assert (key, source) == ("redis.addr", "environment variable REDIS_ADDR")
    assert words in message


def test_web_tokens_from_environment() -> None:
    env = {"WEB_TOKENS": f"ci:operator:{TOKEN}, ops:Admin:{TOKEN}:with:colons"}
    tokens = load_settings(env=env).web.tokens
    assert [(t.name, t.role, t.token) for t in tokens] == [
        ("ci", "operator", TOKEN),
        ("ops", "admin", f"{TOKEN}:with:colons"),
    ]
    assert TOKEN not in repr(load_settings(env=env))


def test_malformed_web_tokens_never_echo_the_secret() -> None:
    error = error_of(env={"WEB_TOKENS": f"ci:operator:{TOKEN},{TOKEN}"})
    key, source, message = only_issue(error)
    assert (key, source) == ("web.tokens", "environment variable WEB_TOKENS")
    assert "entry 2 is not name:role:token" in message
    assert TOKEN not in str(error)


def test_short_token_from_environment_is_rejected_without_echo() -> None:
    error = error_of(env={"WEB_TOKENS": "ci:viewer:short"})
    key, source, message = only_issue(error)
    assert key == "web.tokens[0].token"
    assert source == "environment variable WEB_TOKENS"
    assert "at least 16 characters" in message
    assert "short" not in message


def test_unrelated_variables_are_ignored() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "WORKERS": "3",  # no underscore after the section name
        "REDISCLI_AUTH": "x",
        "worker_count": "not ours: lower case",
        "FOO__BAR": "unknown section",
        "CONVEYOR_CONFIG": "",
        "CONVEYOR_IGNORE_ENV": "",
        "CONVEYOR_TEST_DATABASE": "used by the test suite",
    }
    assert load_settings(env=env) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_VERSION", "7.2.4"),
        ("REDIS_DOWNLOAD_SHA", "abc"),
        ("REDIS_TLS_URL", "rediss://x"),
        ("WEB_CONCURRENCY", "4"),
        ("REDIS_PORT", "tcp://10.0.0.3:6379"),
        ("REDIS_SERVICE_HOST", "10.0.0.3"),
        ("REDIS_SERVICE_PORT", "6379"),
        ("REDIS_SERVICE_PORT_CLIENT", "6379"),
        ("DATABASE_PORT_5432_TCP_ADDR", "10.0.0.4"),
        ("WEB_PORT_80_TCP", "tcp://10.0.0.5:80"),
    ],
)
def test_well_known_foreign_variables_are_allowed(name: str, value: str) -> None:
    assert load_settings(env={name: value}) == Settings()


def test_unknown_bare_variable_in_a_section_is_an_error() -> None:
    key, source, message = only_issue(error_of(env={"WORKER_CONUT": "3"}))
    assert (key, source) == ("worker.conut", "environment variable WORKER_CONUT")
    assert "did you mean WORKER_COUNT?" in message
    assert "CONVEYOR_IGNORE_ENV" in message


def test_port_without_service_link_value_is_not_foreign() -> None:
    key, _, _ = only_issue(error_of(env={"DATABASE_PORT": "5432"}))
    assert key == "database.port"


def test_ignore_list_silences_named_variables_only() -> None:
    env = {"CONVEYOR_IGNORE_ENV": "LOG_DIR, WEB_ROOT", "LOG_DIR": "/var/log", "WEB_ROOT": "/srv"}
    assert load_settings(env=env) == Settings()
    error = error_of(env={**env, "LOG_FILE": "x"})
    assert [i.source for i in error.errors] == ["environment variable LOG_FILE"]


def test_unknown_prefixed_variable_is_an_error() -> None:
    error = error_of(env={"CONVEYOR_WROKER_COUNT": "3", "CONVEYOR_NOPE": "1"})
    issues = {i.source: i.message for i in error.errors}
    assert (
        "no such setting (did you mean CONVEYOR_WORKER_COUNT?)"
        in issues["environment variable CONVEYOR_WROKER_COUNT"]
    )
    assert issues["environment variable CONVEYOR_NOPE"].startswith("no such setting")


def test_prefixed_variable_is_never_foreign() -> None:
    error = error_of(env={"CONVEYOR_REDIS_VERSION": "7"})
    assert error.errors[0].source == "environment variable CONVEYOR_REDIS_VERSION"


@pytest.mark.parametrize("name", ["WEB_USERS", "CONVEYOR_WEB_USERS", "CONVEYOR_QUEUES"])
def test_file_only_settings_refuse_the_environment(name: str) -> None:
    _, source, message = only_issue(error_of(env={name: "x"}))
    assert source == f"environment variable {name}"
    assert "only be set in the configuration file" in message


def test_two_spellings_with_different_values_conflict() -> None:
    key, source, message = only_issue(error_of(env={"WORKER_COUNT": "3", "WORKER__COUNT": "4"}))
    assert key == "worker.count"
    assert source == "environment variables WORKER_COUNT and WORKER__COUNT"
    assert "different values" in message
    assert load_settings(env={"WORKER_COUNT": "3", "WORKER__COUNT": "3"}).worker.count == 3


def test_bad_int_in_environment_names_the_variable() -> None:
    error = error_of(env={"WORKER_COUNT": "ten"})
    key, source, message = only_issue(error)
    assert (key, source) == ("worker.count", "environment variable WORKER_COUNT")
    assert "valid integer" in message and "'ten'" in message
    assert (
        str(error)
        .splitlines()[1]
        .strip()
        .startswith("worker.count (environment variable WORKER_COUNT): ")
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONVEYOR_QUEUER_SERVICE_HOST", "10.0.0.7"),
        ("CONVEYOR_QUEUER_PORT", "tcp://10.0.0.7:9101"),
        ("CONVEYOR_WEB_SERVICE_PORT_HTTP", "8080"),
        ("CONVEYOR_WEB_PORT_8080_TCP_ADDR", "10.0.0.8"),
    ],
)
def test_service_links_of_a_conveyor_service_are_not_settings(name: str, value: str) -> None:
    # What Kubernetes injects for Services named conveyor-queuer and conveyor-web.
    assert load_settings(env={name: value}) == Settings()


def test_kubernetes_service_link_on_a_real_key_gets_a_hint() -> None:
    _, _, message = only_issue(error_of(env={"WEB_PORT": "tcp://10.0.0.9:8080"}))
    assert "Kubernetes service link" in message
    settings = load_settings(env={"WEB_PORT": "tcp://10.0.0.9:8080", "CONVEYOR_WEB_PORT": "9000"})
    assert settings.web.port == 9000


def test_conveyor_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "worker: {count: 6}\n")
    assert load_settings(env={"CONVEYOR_CONFIG": str(path)}).worker.count == 6
    assert (
        load_settings(tmp_path / "conveyor.yaml", env={"CONVEYOR_CONFIG": "/nope"}).worker.count
        == 6
    )


# -- precedence and overrides ----------------------------------------------------------------


def test_precedence_defaults_file_environment_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "worker: {count: 2, processes: 3, lease: 1m}\njobs: {max_attempts: 9}\n")
    env = {"WORKER_COUNT": "5", "WORKER_PROCESSES": "6"}
    settings = load_settings(path, env=env, overrides={"worker.count": 8})
    assert settings.worker.count == 8  # argument beats environment and file
    assert settings.worker.processes == 6  # environment beats file
    assert settings.worker.lease == 60  # file beats default
    assert settings.jobs.max_attempts == 9
    assert settings.worker.heartbeat_interval == 1  # default


def test_overrides_accept_strings_attribute_names_and_queue_paths() -> None:
    settings = load_settings(
        env={},
        overrides={
            "worker.count": "12",
            "database.schema_name": "alt",
            "worker.queues": ("a", "b"),
            "queues.billing.target": "10m",
            "queues.reports.v2": {"warning_waiting": 5},
        },
    )
    assert settings.worker.count == 12
    assert settings.database.schema_name == "alt"
    assert settings.worker.queues == ["a", "b"]
    assert settings.queue_target("billing") == 600
    assert settings.queue_target("email-sending", "high") == 60  # built-in entries survive
    assert settings.queue_thresholds("reports.v2")[0] == 5


def test_dumped_settings_reload_through_overrides(tmp_path: Path) -> None:
    # conveyor.app re-layers a Settings object this way; nothing may change on the way through.
    path = write(tmp_path, """queues: {"warmup:process": null, billing: {target: 1m}}\n""")
    env = {"REDIS_ADDR": "h:1", "DATABASE_SCHEMA": "x", "JOBS_TIMEOUT": "5s"}
    original = load_settings(path, env=env)
    assert "warmup:process" not in original.queues
    flat: dict[str, Any] = {}
    for section, values in original.model_dump(by_alias=True).items():
        if section == "queues":
            flat[section] = values
        else:
            flat.update({f"{section}.{key}": value for key, value in values.items()})
    assert load_settings(env={}, overrides=flat) == original


def test_unknown_override_is_an_argument_error() -> None:
    error = error_of(overrides={"worker.conut": 3, "nope.x": 1})
    assert [(i.key, i.source) for i in error.errors] == [
        ("worker.conut", "argument"),
        ("nope.x", "argument"),
    ]
    assert "did you mean worker.count?" in error.errors[0].message


def test_bad_override_value_names_the_argument() -> None:
    key, source, message = only_issue(error_of(overrides={"worker.processes": 0}))
    assert (key, source) == ("worker.processes", "argument")
    assert "greater than or equal to 1" in message


def test_environment_replaces_a_file_list_and_its_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  queues:\n    - a\n")
    key, source, _ = only_issue(error_of(path=path, overrides={"worker.queues": [1]}))
    assert (key, source) == ("worker.queues[0]", "argument")


# -- the YAML file ---------------------------------------------------------------------------


def test_bad_duration_in_file_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        # comment
        worker:
          count: 4
          heartbeat_interval: 3O s
        """,
    )
    error = error_of(path=path)
    key, source, message = only_issue(error)
    assert key == "worker.heartbeat_interval"
    assert source == f"{path} line 4"
    assert "invalid duration '3O s'" in message
    assert f"worker.heartbeat_interval ({path} line 4): invalid duration" in str(error)


def test_unknown_key_in_file_names_its_line_and_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  count: 4\n  conut: 5\nwroker: {}\n")
    error = error_of(path=path)
    issues = {(i.key, i.source): i.message for i in error.errors}
    assert issues[("worker.conut", f"{path} line 3")] == "unknown setting (did you mean 'count'?)"
    assert issues[("wroker", f"{path} line 4")] == "unknown setting (did you mean 'worker'?)"


def test_unknown_key_in_nested_list_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        web:
          tokens:
            - name: ci
              token: {TOKEN}
              role: viewer
              rol: admin
        """,
    )
    key, source, message = only_issue(error_of(path=path))
    assert (key, source) == ("web.tokens[0].rol", f"{path} line 6")
    assert "did you mean 'role'?" in message


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  count: 4\n  queues: [a, b\nlog: {}\n")
    key, source, message = only_issue(error_of(path=path))
    assert key == ""
    assert source.startswith(f"{path} line ")
    assert message.startswith("invalid YAML")


def test_bad_indentation_is_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  count: 4\n   lease: 1s\n")
    _, source, message = only_issue(error_of(path=path))
    assert source == f"{path} line 3"
    assert "invalid YAML" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    error = error_of(path=tmp_path / "absent.yaml")
    key, source, message = only_issue(error)
    assert (key, source) == ("", str(tmp_path / "absent.yaml"))
    assert "configuration file not found" in message
    assert str(error).endswith(f"{tmp_path / 'absent.yaml'}: {message}")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _, _, message = only_issue(error_of(path=tmp_path))
    assert "cannot read configuration file" in message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  count: 4\n  count: 5\n")
    key, source, message = only_issue(error_of(path=path))
    assert (key, source) == ("worker.count", f"{path} line 3")
    assert "also on line 2" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- worker\n")
    _, source, message = only_issue(error_of(path=path))
    assert source == f"{path} line 1"
    assert "mapping of sections" in message


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "worker: 5\n")
    key, source, message = only_issue(error_of(path=path))
    assert (key, source) == ("worker", f"{path} line 1")
    assert message == "must be a mapping of keys to values (got 5)"


def test_several_documents_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "worker: {}\n---\nlog: {}\n")
    _, _, message = only_issue(error_of(path=path))
    assert "invalid YAML" in message


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, f"log: !!python/object/apply:os.system ['touch {marker}']\n")
    _, source, message = only_issue(error_of(path=path))
    assert source == f"{path} line 1"
    assert "invalid YAML" in message
    assert not marker.exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "worker:\n  # count: 4\nlog:\n"])
def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text), env={}) == Settings()


def test_file_values_of_every_kind(tmp_path: Path) -> None:
    from conveyor.web.auth import hash_password

    key = Fernet.generate_key().decode()
    path = write(
        tmp_path,
        f"""
        database: {{schema: conveyor_blue, connect_timeout: 250ms}}
        jobs: {{max_payload_bytes: 512KiB, timeout: 1h}}
        web:
          tokens:
            - {{name: ci, token: "{TOKEN}", role: operator}}
          users:
            - {{username: alice, password_hash: "{hash_password("pw")}", role: Admin}}
        encryption:
          keys: ["{key}"]
          fields: [card]
        """,
    )
    settings = load_settings(path, env={})
    assert settings.database.schema_name == "conveyor_blue"
    assert settings.database.connect_timeout == 0.25
    assert settings.jobs.max_payload_bytes == 524288
    assert settings.jobs.timeout == 3600
    assert settings.web.tokens[0].role == "operator"
    assert settings.web.users[0].role == "admin"
    assert settings.encryption.keys == [key]
    assert key not in repr(settings)


def test_file_queue_table_merges_into_the_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        queues:
          billing: {target: 2m}
          "email-sending": {warning_waiting: 50}
          "warmup:process": null
        """,
    )
    settings = load_settings(path, env={})
    assert settings.queue_target("billing") == 120
    assert settings.queue_target("email-sending") == 300  # the built-in target is kept
    assert settings.queue_thresholds("email-sending")[0] == 50
    assert settings.queue_target("email-sending", "high") == 60
    assert "warmup:process" not in settings.queues


def test_yaml_boolean_is_not_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, "worker: {count: yes}\n")
    key, _, message = only_issue(error_of(path=path))
    assert key == "worker.count"
    assert "boolean" in message


# -- validation rules and error reporting ----------------------------------------------------


def test_several_errors_are_all_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  count: 0\n  lease: soon\nlog: {level: loud}\n")
    error = error_of(
        path=path,
        env={"QUEUER_BATCH_SIZE": "20000", "CONVEYOR_NOPE": "1"},
        overrides={"health.port": -1},
    )
    found = {(i.key, i.source) for i in error.errors}
    assert found == {
        ("nope", "environment variable CONVEYOR_NOPE"),
        ("worker.count", f"{path} line 2"),
        ("worker.lease", f"{path} line 3"),
        ("log.level", f"{path} line 4"),
        ("queuer.batch_size", "environment variable QUEUER_BATCH_SIZE"),
        ("health.port", "argument"),
    }
    text = str(error)
    assert text.startswith("invalid configuration (6 problems):")
    assert len(text.splitlines()) == 7
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        ({"DATABASE_SCHEMA": "Bad-Name"}, "database.schema", "plain SQL identifier"),
        ({"DATABASE_SCHEMA": "a" * 64}, "database.schema", "63 characters"),
        ({"DATABASE_URL": "mysql://root:hunter2@db/x"}, "database.url", "postgresql://"),
        ({"REDIS_URL": "http://r"}, "redis.url", "redis://"),
        ({"QUEUER_POLL_INTERVAL": "0"}, "queuer.poll_interval", "greater than 0"),
        ({"QUEUER_BATCH_SIZE": "0"}, "queuer.batch_size", "greater than or equal to 1"),
        ({"WORKER_PROCESSES": "257"}, "worker.processes", "less than or equal to 256"),
        ({"WORKER_LANE_ORDER": "random"}, "worker.lane_order", "'queue' or 'priority'"),
        ({"JOBS_MAX_ATTEMPTS": "0"}, "jobs.max_attempts", "greater than or equal to 1"),
        ({"JOBS_MAX_ATTEMPTS": "3000000000"}, "jobs.max_attempts", "equal to 2147483647"),
        ({"JOBS_DEFAULT_PRIORITY": "5000"}, "jobs.default_priority", "0 (most urgent) to 1000"),
        ({"JOBS_DEFAULT_PRIORITY": "-1"}, "jobs.default_priority", "0 (most urgent) to 1000"),
        ({"JOBS_MAX_PAYLOAD_BYTES": "1 parsec"}, "jobs.max_payload_bytes", "invalid size"),
        ({"JOBS_TIMEOUT": "-5s"}, "jobs.timeout", "greater than 0"),
        ({"WEB_PORT": "0"}, "web.port", "greater than or equal to 1"),
        ({"HEALTH_PORT": "70000"}, "health.port", "less than or equal to 65535"),
        ({"ENCRYPTION_KEYS": "not-a-key"}, "encryption.keys", "key 1 is not a Fernet key"),
        ({"RETRY_JITTER": "maybe"}, "retry.jitter", "valid boolean"),
        ({"LOG_FORMAT": "xml"}, "log.format", "'text' or 'json'"),
    ],
)
def test_field_rules(env: dict[str, str], key: str, words: str) -> None:
    issue_key, source, message = only_issue(error_of(env=env))
    assert issue_key == key
    assert source == f"environment variable {next(iter(env))}"
    assert words in message


@pytest.mark.parametrize(
    "priority", [MIN_PRIORITY - 1, MIN_PRIORITY, HIGH_PRIORITY_MAX, MAX_PRIORITY, MAX_PRIORITY + 1]
)
def test_default_priority_loads_exactly_when_enqueue_would_accept_it(priority: int) -> None:
    try:
        check_priority(priority)
    except ValueError:
        enqueue_accepts = False
    else:
        enqueue_accepts = True
    env = {"JOBS_DEFAULT_PRIORITY": str(priority)}
    if enqueue_accepts:
        assert load_settings(env=env).jobs.default_priority == priority
    else:
        key, _, message = only_issue(error_of(env=env))
        assert key == "jobs.default_priority" and f"(got {priority})" in message


def test_secrets_are_never_echoed() -> None:
    error = error_of(
        env={"DATABASE_URL": "mysql://root:hunter2@db/x", "WEB_SESSION_SECRET": "x"},
        overrides={"web.session_secret": 5},
    )
    assert "hunter2" not in str(error)
    assert "(got" not in str(error)


def test_cross_field_error_points_at_the_value_the_operator_set() -> None:
    key, source, message = only_issue(error_of(env={"WORKER_HEARTBEAT_INTERVAL": "10s"}))
    assert (key, source) == (
        "worker.heartbeat_interval",
        "environment variable WORKER_HEARTBEAT_INTERVAL",
    )
    assert "worker.dead_after (5s) must be longer than worker.heartbeat_interval (10s)" in message
    key, source, _ = only_issue(error_of(env={"WORKER_DEAD_AFTER": "500ms"}))
    assert (key, source) == ("worker.dead_after", "environment variable WORKER_DEAD_AFTER")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"retry.base": "10m"}, "retry.base"),
        ({"retry.cap": "100ms"}, "retry.cap"),
        ({"thresholds.critical_waiting": 5}, "thresholds.critical_waiting"),
        ({"queues.billing": {"warning_waiting": 5000}}, "queues.billing"),
        ({"web.tokens": f"a:viewer:{TOKEN},a:admin:{TOKEN}x"}, "web.tokens"),
    ],
)
def test_cross_field_rules(overrides: dict[str, Any], key: str) -> None:
    issue_key, source, _ = only_issue(error_of(overrides=overrides))
    assert issue_key.startswith(key)
    assert source == "argument"


def test_issue_objects_expose_key_source_message() -> None:
    issue = error_of(env={"WORKER_COUNT": "x"}).errors[0]
    assert (issue.key, issue.source) == ("worker.count", "environment variable WORKER_COUNT")
    assert str(issue) == f"{issue.key} ({issue.source}): {issue.message}"


# -- finding 5: weak secrets are refused at start ------------------------------------------


@pytest.mark.parametrize(
    "secret",
    ["changeme", "x" * 64, "abcdefghij" * 7, "0123456789abcdef" * 2, "Passw0rd!" * 3],
)
def test_finding_5_a_weak_session_secret_is_refused(secret: str) -> None:
    key, _, message = only_issue(error_of(env={"WEB_SESSION_SECRET": secret}))
    assert key == "web.session_secret"
    assert "32 bytes" in message and "token_hex" in message
    assert secret not in message


def test_finding_5_a_strong_session_secret_is_accepted() -> None:
    import secrets

    for secret in (secrets.token_hex(32), secrets.token_urlsafe(48)):
        assert load_settings(env={"WEB_SESSION_SECRET": secret}).web.session_secret == secret


def _scrypt(n: int, r: int, p: int, salt: bytes = b"s" * 16, dklen: int = 64) -> str:
    import base64
    import hashlib

    digest = hashlib.scrypt(b"pw", salt=salt, n=n, r=r, p=p, dklen=dklen)
    encode = base64.urlsafe_b64encode
    return f"scrypt${n}${r}${p}${encode(salt).decode()}${encode(digest).decode()}"


@pytest.mark.parametrize(
    ("password_hash", "why"),
    [
        ("hunter2-is-my-password", "not an scrypt hash"),
        ("$scrypt$abc", "not an scrypt hash"),
        ("scrypt$16384$8$1$!!!$???", "not an scrypt hash"),
        ("scrypt$x$8$1$c2FsdA==$ZGlnZXN0", "not an scrypt hash"),
        (_scrypt(2**10, 8, 1), "too weak"),
        (_scrypt(2**14, 1, 1), "too weak"),
        (_scrypt(2**14, 8, 1, salt=b"s"), "too weak"),
        (_scrypt(2**14, 8, 1, dklen=8), "too weak"),
    ],
)
def test_finding_5_bad_password_hashes_are_refused(password_hash: str, why: str) -> None:
    user = {"username": "alice", "password_hash": password_hash, "role": "admin"}
    key, _, message = only_issue(error_of(overrides={"web.users": [user]}))
    assert key.startswith("web.users") and why in message and "hash-password" in message
    assert password_hash not in message


def test_finding_5_a_good_password_hash_is_accepted() -> None:
    from conveyor.web.auth import hash_password

    user = {"username": "alice", "password_hash": hash_password("pw"), "role": "admin"}
    assert load_settings(env={}, overrides={"web.users": [user]}).web.users[0].role == "admin"
