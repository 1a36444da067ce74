"""The kafka, stack and profile parts of the one settings model: one YAML file ($TOMOBLUESKY_CONFIG)
read by the Kafka clients, the stack and the IPython profile, the environment over it."""

import os
from pathlib import Path

import pytest
import yaml

from tomobluesky.cli import main
from tomobluesky.cli_settings import effective
from tomobluesky.config import Settings, load_settings
from tomobluesky.services.stack_config import StackConfigError, load_stack_settings

PROFILE = Path(__file__).resolve().parents[2] / "profile_collection" / "startup"

# nslsii's documented SASL example (as tests/unit/transport/test_config.py has it), here as the site file
SITE_SASL = """\
abort_run_on_kafka_exception: false
bootstrap_servers: [localhost:9092, kafka2:9092]
producer_consumer_security_config:
  security.protocol: SASL_SSL
  sasl.mechanisms: PLAIN
  sasl.username: site-bot
  sasl.password: site-s3cret
consumer_config: {auto.offset.reset: latest}
runengine_topics: ["{endstation}.bluesky.runengine.documents"]
"""


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("TOMOBLUESKY_") or name == "BLUESKY_KAFKA_CONFIG_PATH":
            monkeypatch.delenv(name)
    path = tmp_path / "tomobluesky.yml"
    monkeypatch.setenv("TOMOBLUESKY_CONFIG", str(path))
    return path


def test_a_kafka_section_in_the_settings_file_configures_the_clients(config_file, tmp_path):
    config_file.write_text(f"""\
beamline: FXI
kafka:
  bootstrap_servers: [kafka1:9092, kafka2:9092]
  runengine_topics: ["{{endstation}}.bluesky.runengine.documents"]
  runengine_producer_config: {{compression.type: lz4}}
  abort_run_on_kafka_exception: false
  journal_dir: {tmp_path / 'journal'}
  max_message_bytes: 2000000
""")
    config = Settings().kafka_config()
    assert config.bootstrap == "kafka1:9092,kafka2:9092"
    assert config.document_topic == "fxi.bluesky.runengine.documents"  # the top-level beamline, lower-cased
    assert dict(config.producer_config) == {"compression.type": "lz4"}
    assert config.abort_run_on_kafka_exception is False
    assert (config.journal_dir, config.max_message_bytes) == (tmp_path / "journal", 2_000_000)


def test_the_section_is_over_the_site_file_and_the_environment_over_both(config_file, tmp_path, monkeypatch):
    site = tmp_path / "kafka.yml"
    site.write_text(SITE_SASL + "beamline: CSX\n")
    monkeypatch.setenv("BLUESKY_KAFKA_CONFIG_PATH", str(site))
    config_file.write_text("beamline: tomo\nkafka:\n  consumer_config: {session.timeout.ms: 10000}\n")
    config = Settings().kafka_config()
    assert config.source == site and config.bootstrap == "localhost:9092,kafka2:9092"
    assert config.document_topic == "csx.bluesky.runengine.documents"  # the site's beamline over the default
    # the section's librdkafka settings join the site's, setting by setting
    assert dict(config.consumer_config) == {"auto.offset.reset": "latest", "session.timeout.ms": 10000}
    assert config.security_config["sasl.password"] == "site-s3cret" and config.abort_run_on_kafka_exception is False
    monkeypatch.setenv("TOMOBLUESKY_KAFKA__BEAMLINE", "ISS")  # a nested variable sets the section
    monkeypatch.setenv("TOMOBLUESKY_KAFKA_BOOTSTRAP", "broker:1")  # the documented variable wins over all
    config = Settings().kafka_config()
    assert (config.bootstrap, config.document_topic) == ("broker:1", "iss.bluesky.runengine.documents")
    password = tmp_path / "password"
    password.write_text("env-s3cret\n")
    monkeypatch.setenv("TOMOBLUESKY_KAFKA_SASL_PASSWORD_FILE", str(password))
    assert Settings().kafka_config().security_config["sasl.password"] == "env-s3cret"


def test_config_shows_the_kafka_clients_settings_masked_and_reads_back(config_file, tmp_path, monkeypatch, capsys):
    site = tmp_path / "kafka.yml"
    site.write_text(SITE_SASL)
    config_file.write_text(f"data_dir: {tmp_path / 'data'}\nkafka:\n  config_file: {site}\n  beamline: hxn\n")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert "site-s3cret" not in out
    kafka = printed["kafka"]
    assert kafka["producer_consumer_security_config"] == {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.username": "site-bot",
        "sasl.password": "********"}
    assert (kafka["config_file"], kafka["beamline"], kafka["bootstrap_servers"]) == (
        str(site), "hxn", ["localhost:9092", "kafka2:9092"])
    config_file.write_text(out)
    assert effective(Settings()) == printed
    # the masked password read back is no password: the site file's is still the one used
    assert Settings().kafka_config().security_config["sasl.password"] == "site-s3cret"


def test_an_unknown_kafka_key_is_refused_naming_the_file_and_the_key(config_file, capsys):
    config_file.write_text("kafka:\n  bootstrap_server: typo:9092\n")
    assert main(["ls"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tomobluesky: error: {config_file}: unknown setting 'kafka.bootstrap_server' "
        "(see the settings in docs/configuration.md)")


def test_the_stack_reads_the_same_file_with_the_shared_keys(config_file, tmp_path, monkeypatch):
    root = tmp_path / "root"
    config_file.write_text(f"""\
beamline: bm05
data_dir: {tmp_path / 'catalog'}
data_roots: [{tmp_path / 'detector'}]
memory_budget_gb: 1.5
recon: {{algorithm: fbp}}
stack:
  workers: {{reconstruction: 3}}
  kafka: {{port: 0, partitions: 8}}
  paths: {{root: {root}}}
""")
    monkeypatch.setenv("TOMOBLUESKY_STACK__WORKERS__CATALOG", "2")
    for stack in (load_stack_settings(config_file), load_stack_settings()):  # --config FILE or $TOMOBLUESKY_CONFIG
        assert (stack.beamline, stack.workers.reconstruction, stack.workers.catalog) == ("bm05", 3, 2)
        assert (stack.workers.algorithm, stack.workers.memory_budget_gb) == ("fbp", 1.5)
        assert (stack.kafka.port, stack.kafka.partitions, stack.tiled.port) == (0, 8, 8000)
        paths = stack.paths.resolved()
        assert (paths.root, paths.catalog, paths.logs) == (root, tmp_path / "catalog", root / "logs")
        assert paths.data_roots == [tmp_path / "detector"]
        assert stack.config_file == config_file
    # the stack's own programs read the same file: the recon section reaches the workers
    from tomobluesky.services.stack import Ports, Stack

    ports = Ports(kafka=19092, kafka_controller=19093, tiled=18000, postgres=15432, dask_scheduler=18786,
                  dask_dashboard=18787, viewer=18080)
    programs = {p.name: p for p in Stack(load_stack_settings(config_file)).programs(ports, ["java"])}
    assert programs["reconstruction"].environment["TOMOBLUESKY_CONFIG"] == str(config_file)
    assert "TOMOBLUESKY_CONFIG" not in programs["kafka"].environment
    assert load_settings(programs["reconstruction"].environment["TOMOBLUESKY_CONFIG"]).recon.algorithm == "fbp"


@pytest.mark.parametrize("text, named", [
    ("stack: {workers: {reconstrution: 3}}\n", "stack.workers.reconstrution"),
    ("stack: {kafka: {port: 70000}}\n", "stack.kafka.port"),
    ("workers: {reconstruction: 3}\n", "workers"),  # the stack's old file: its sections go under stack:
    ("kafka: {port: 9092}\n", "kafka.port"),
])
def test_a_bad_stack_key_is_one_error_naming_the_file_and_key(config_file, text, named):
    config_file.write_text(text)
    with pytest.raises(StackConfigError, match=rf"{config_file}: {named}\b") as err:
        load_stack_settings(config_file)
    assert ("go under 'stack:'" in str(err.value)) == (not text.startswith("stack"))


def test_the_stacks_old_variables_are_refused_naming_the_new_ones(config_file, monkeypatch):
    monkeypatch.setenv("TOMOBLUESKY_STACK_WORKERS__RECONSTRUCTION", "4")
    with pytest.raises(StackConfigError, match="TOMOBLUESKY_STACK__WORKERS__RECONSTRUCTION"):
        load_stack_settings()


def test_the_profile_reads_its_settings_from_the_model(config_file, tmp_path, monkeypatch, capsys):
    config_file.write_text(f"data_dir: {tmp_path / 'data'}\nsource: phantom\n")
    monkeypatch.setenv("TOMOBLUESKY_HEADLESS", "1")
    monkeypatch.setenv("TOMOBLUESKY_MD_DIR", str(tmp_path / "md"))
    settings = Settings()
    assert (settings.source, settings.headless, settings.runengine_md) == ("phantom", True, tmp_path / "md")
    namespace: dict = {}
    exec(compile((PROFILE / "00-base.py").read_text(), "00-base.py", "exec"), namespace)
    RE = namespace["RE"]
    assert Path(RE.md._directory) == tmp_path / "md" and namespace["bec"]._plots_enabled is False
    RE.md["scan_id"] = 7  # persisted where TOMOBLUESKY_MD_DIR says
    assert any((tmp_path / "md").iterdir())
    monkeypatch.delenv("TOMOBLUESKY_MD_DIR")
    monkeypatch.setenv("TOMOBLUESKY_HEADLESS", "0")
    assert (Settings().headless, Settings().runengine_md) == (False, tmp_path / "data" / "runengine-md")
    monkeypatch.setenv("TOMOBLUESKY_SOURCE", "camera")  # a source the profile does not have is refused
    assert main(["ls"]) == 2
    assert "TOMOBLUESKY_SOURCE='camera': Input should be 'replay' or 'phantom'" in capsys.readouterr().err


def _documented():
    return (PROFILE.parents[1] / "docs" / "configuration.md").read_text()


def _keys(model, prefix=""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if nested and (name in ("recon", "kafka", "stack") or prefix.startswith("stack.")):
            yield from _keys(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_every_setting_is_documented_with_its_variable():
    text = _documented()
    missing = [key for key in _keys(Settings) if f"| `{key}` | `TOMOBLUESKY_{key.upper().replace('.', '__')}` |"
               not in text]
    assert not missing


def test_the_documented_example_file_is_valid(config_file):
    text = _documented()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config_file.write_text(example)
    settings = Settings()
    assert (settings.beamline, settings.stack.workers.reconstruction, settings.source) == ("fxi", 4, "replay")
    assert settings.kafka_config().consumer_config["session.timeout.ms"] == 10000
    assert load_stack_settings().paths.resolved().catalog == Path("/data/tomobluesky/catalog")
