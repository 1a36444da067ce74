"""The stack's configuration model, its supervisord configuration and the commands it generates
(no process is started here; tests/system/test_stack.py runs the stack)."""

from __future__ import annotations

import shlex

import pytest

from tomobluesky.services.stack_config import StackConfigError, StackSettings, load_stack_settings, masked
from tomobluesky.services.supervisor import Program, Supervisor, SupervisorError


def test_yaml_sections_are_read_and_the_environment_overrides(tmp_path, monkeypatch):
    path = tmp_path / "tomobluesky.yml"
    path.write_text("beamline: bm05\nstack:\n  workers: {reconstruction: 3}\n  dask: {workers: 2, memory_limit: 4GB}\n"
                    f"  paths: {{root: {tmp_path / 'root'}}}\n")
    monkeypatch.setenv("TOMOBLUESKY_STACK__WORKERS__CATALOG", "2")
    s = load_stack_settings(path)
    assert (s.beamline, s.workers.reconstruction, s.workers.catalog, s.dask.workers) == ("bm05", 3, 2, 2)
    assert s.kafka.port == 9092 and s.postgres.listen == ""  # defaults kept beside the file's values
    paths = s.paths.resolved()
    assert paths.logs == tmp_path / "root" / "logs"
    assert paths.data_roots == [tmp_path / "root" / "catalog" / "detector"]


@pytest.mark.parametrize("text, named", [
    ("stack: {workers: {reconstrution: 3}}\n", "stack.workers.reconstrution"),  # a typo is refused, not ignored
    ("stack: {kafka: {port: 70000}}\n", "stack.kafka.port"),
    ("stack: {postgres: {database: 'x; DROP TABLE'}}\n", "stack.postgres.database"),
    ("stack: {dask: {memory_limit: lots}}\n", "stack.dask.memory_limit"),
    ("- a list\n", "mapping of settings"),
    ("stack: [\n", "not valid YAML"),
])
def test_bad_configuration_is_one_error_naming_the_key(tmp_path, text, named):
    path = tmp_path / "tomobluesky.yml"
    path.write_text(text)
    with pytest.raises(StackConfigError, match=named.replace(".", r"\.")):
        load_stack_settings(path)


def test_a_missing_file_given_explicitly_is_an_error(tmp_path):
    with pytest.raises(StackConfigError, match="nope.yml, which is not a file"):
        load_stack_settings(tmp_path / "nope.yml")


def test_masked_hides_secret_fields():
    from pydantic import SecretStr

    class WithSecret(StackSettings):
        token: SecretStr = SecretStr("s3cr3t-value")

    shown = masked(WithSecret())
    assert shown["token"] == "**********" and "s3cr3t-value" not in repr(shown)
    assert shown["workers"]["reconstruction"] == 2


def test_supervisor_config_quotes_commands_and_names_copies(tmp_path):
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    text = sup.render([Program("worker", ["/bin/echo", "50%", "two words"], numprocs=3),
                       Program("single", ["/bin/true"], user="postgres", stopsignal="INT")])
    worker = text.split("[program:worker]")[1].split("[program:")[0]
    assert "command=/bin/echo 50%% 'two words'" in worker  # supervisord would expand a bare %
    assert "numprocs=3" in worker and "process_name=%(program_name)s-%(process_num)d" in worker
    assert f"stdout_logfile={tmp_path / 'logs'}/%(program_name)s-%(process_num)d.log" in worker
    assert "autorestart=true" in worker and "stopasgroup=true" in worker and "killasgroup=true" in worker
    single = text.split("[program:single]")[1]
    assert "user=postgres" in single and "stopsignal=INT" in single and "numprocs=1" in single
    assert Program("worker", [], numprocs=2).process_names() == ["worker:worker-0", "worker:worker-1"]


def test_supervisor_config_refuses_a_secret(tmp_path):
    key = "ab" * 32
    with pytest.raises(SupervisorError, match="secret") as err:
        Supervisor(tmp_path / "run", tmp_path / "logs").render([Program("w", ["/bin/w", key])], secrets=[key])
    assert key not in str(err.value)
    assert not (tmp_path / "run").exists()


def _stack(tmp_path, **sections):
    from tomobluesky.services.stack import Ports, Stack

    stack = Stack(StackSettings(paths={"root": tmp_path / "root"}, **sections))
    ports = Ports(kafka=19092, kafka_controller=19093, tiled=18000, postgres=15432, dask_scheduler=18786,
                  dask_dashboard=18787, viewer=18080)
    return stack, {p.name: p for p in stack.programs(ports, ["/usr/bin/java", "kafka.Kafka", "server.properties"])}


def test_generated_commands_parse_with_the_package_parsers_and_carry_no_key(tmp_path):
    from tomobluesky.cli import build_parser
    from tomobluesky.workers import build_parser as worker_parser

    stack, progs = _stack(tmp_path, workers={"reconstruction": 3, "catalog": 1, "algorithm": "fbp"},
                          dask={"workers": 2})
    assert list(progs) == ["postgres", "kafka", "tiled", "dask-scheduler", "dask-worker", "reconstruction",
                           "catalog", "viewer"]
    assert (progs["reconstruction"].numprocs, progs["catalog"].numprocs, progs["dask-worker"].numprocs) == (3, 1, 2)
    recon = worker_parser().parse_args(progs["reconstruction"].command[3:])
    assert (recon.kind, recon.bootstrap, recon.tiled_uri, recon.algorithm) == (
        "reconstruction", "127.0.0.1:19092", "http://127.0.0.1:18000", "fbp")
    assert recon.api_key_file == str(stack.catalog_layout.key_file)
    assert recon.data_root == [str(stack.paths.catalog / "detector")]
    catalog = worker_parser().parse_args(progs["catalog"].command[3:])
    assert catalog.kind == "catalog" and catalog.group == "tomobluesky-catalog"
    view = build_parser().parse_args(progs["viewer"].command[3:])
    assert (view.uri, view.port, view.public) == ("http://127.0.0.1:18000", 18080, False)
    assert progs["tiled"].command[1:4] == ["serve", "config", str(stack.catalog_layout.config_file)]
    assert progs["dask-worker"].command[2] == "tcp://127.0.0.1:18786"
    for p in progs.values():
        assert not any("api-key" in a and a != "--api-key-file" for a in p.command), shlex.join(p.command)


def test_services_left_out_are_not_generated(tmp_path):
    _, progs = _stack(tmp_path, workers={"reconstruction": 0, "catalog": 1}, dask={"workers": 0},
                      viewer={"enabled": False})
    assert list(progs) == ["postgres", "kafka", "tiled", "catalog"]


def test_the_stack_probes_the_groups_its_workers_join():
    from tomobluesky import workers
    from tomobluesky.services import stack

    assert (stack.RECON_GROUP, stack.CATALOG_GROUP) == (workers.RECON_GROUP, workers.CATALOG_GROUP)


def test_postgres_urls_use_the_socket_and_no_password(tmp_path):
    from tomobluesky.services.postgres import PostgresCluster, current_user, find_bin_dir

    pg = PostgresCluster(tmp_path / "pg", 5433, find_bin_dir())
    assert pg.sqlalchemy_uri("cat") == f"postgresql+asyncpg://{current_user()}@/cat?host={tmp_path}/pg/socket&port=5433"
    assert pg.libpq_uri("tab") == f"postgresql:///tab?host={tmp_path}/pg/socket&port=5433&user={current_user()}"
    assert pg.socket_file == tmp_path / "pg" / "socket" / ".s.PGSQL.5433"
    assert pg.server_command() == [str(pg.bin_dir / "postgres"), "-D", str(tmp_path / "pg" / "data")]


def test_a_missing_postgresql_is_named(tmp_path):
    from tomobluesky.services.postgres import PostgresError, find_bin_dir

    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        find_bin_dir(tmp_path)


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="only root hands the server to another user")
def test_as_root_a_directory_the_server_user_cannot_reach_is_named():
    import shutil
    import tempfile
    from pathlib import Path

    from tomobluesky.services.postgres import PostgresCluster, PostgresError, find_bin_dir

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # not tmp_path: pytest's base directory is 0700 itself
    try:
        base.chmod(0o711)
        private = base / "private"
        private.mkdir(mode=0o700)
        pg = PostgresCluster(private / "pg", 5433, find_bin_dir())
        with pytest.raises(PostgresError, match=f"{private} is not searchable by that user"):
            pg.initialise()
        assert not (private / "pg" / "data").exists()
    finally:
        shutil.rmtree(base)
