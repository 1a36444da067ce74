"""deploy/kafka/ holds rendered copies of the templates the Python module uses: never stale."""

from pathlib import Path

from tomobluesky.services.kafka import LOG4J2_CONFIG, render_pom

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kafka"


def test_pom_is_current():
    assert (DEPLOY / "pom.xml").read_text() == render_pom(), "regenerate deploy/kafka/pom.xml from render_pom()"


def test_log4j2_config_is_current():
    assert (DEPLOY / "log4j2.properties").read_text() == LOG4J2_CONFIG


def test_cli_parses():
    import argparse

    from tomobluesky.cli_kafka import add_kafka_commands

    parser = argparse.ArgumentParser()
    add_kafka_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kafka", "start", "--port", "9093", "--state-dir", "/tmp/x"])
    assert (args.kafka_command, args.port, args.state_dir) == ("start", 9093, "/tmp/x")
    assert callable(args.func)
