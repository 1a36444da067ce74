"""deploy/systemd and deploy/kubernetes: valid for their tools, no secret in any command, the
commands the package's own CLI parsers accept.

They cannot run here; the Kubernetes objects are checked against the Kubernetes schemas
(kubernetes-validate, offline) and the units with ``systemd-analyze verify`` where it exists.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30"
HEX_KEY = re.compile(r"\b[0-9a-fA-F]{32,}\b")
# an option that takes a secret's value, a password assignment, or credentials inside a URL
SECRET_ARG = re.compile(r"^--?(api[-_]?key|password|passwd|secret[-_]?key|token)(=|$)|password=|://[^/\s:@]+:[^/\s@$]+@",
                        re.I)
SECRET_ENV = re.compile(r"password|secret|key|token", re.I)


# Kubernetes -------------------------------------------------------------------------------------
def _documents() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _containers(docs=None):
    for doc in docs or _documents():
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                yield doc, pod, c


def test_every_object_matches_the_kubernetes_schema():
    import kubernetes_validate

    docs = _documents()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_mistake():
    import kubernetes_validate

    doc = next(d for d in _documents() if d["kind"] == "Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_wanted_services_are_there_and_kafka_postgres_are_external():
    docs = _documents()
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs if d["kind"] == "Deployment"}
    assert components == {"tiled", "reconstruction", "catalog", "dask-scheduler", "dask-worker", "viewer"}
    external = {d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["spec"].get("type") ==
                "ExternalName"}
    assert external == {"tomobluesky-kafka", "tomobluesky-postgres"}


def test_no_secret_in_commands_and_secrets_only_from_secret_objects():
    for doc, pod, c in _containers():
        argv = [*c.get("command", []), *c.get("args", [])]
        for arg in argv:
            assert not HEX_KEY.search(arg) and not SECRET_ARG.search(arg), (doc["metadata"]["name"], arg)
        for env in c.get("env", []):
            if SECRET_ENV.search(env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], env["name"]
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    for text in config["data"].values():
        assert not HEX_KEY.search(text)
        # every password in the configuration is a ${VAR} tiled expands from the environment
        assert all(m.startswith("${") for m in re.findall(r"(?:tiled:|admin: )(\S+?)[@\n]", text + "\n"))


def test_key_files_are_mounted_from_secrets():
    seen = 0
    for doc, pod, c in _containers():
        argv = c.get("args", [])
        if "--api-key-file" not in argv:
            continue
        key_path = Path(argv[argv.index("--api-key-file") + 1])
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in c["volumeMounts"] if key_path.parent == Path(m["mountPath"]))
        secret = volumes[mount["name"]]["secret"]
        assert mount.get("readOnly") and secret["defaultMode"] == 0o400
        assert key_path.name in {item["path"] for item in secret["items"]}
        seen += 1
    assert seen == 2  # reconstruction and catalog


def test_commands_parse_with_the_package_cli_and_use_one_image():
    from tomobluesky.cli import build_parser
    from tomobluesky.workers import build_parser as worker_parser

    images = set()
    for doc, pod, c in _containers():
        images.add(c["image"])
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        command, args = c["command"], c.get("args", [])
        if component in ("reconstruction", "catalog"):
            assert command == ["python", "-m", "tomobluesky.workers"]
            parsed = worker_parser().parse_args(args)
            assert parsed.kind == component and parsed.api_key_file
        elif component == "viewer":
            assert command == ["tomobluesky", "view"]
            assert build_parser().parse_args(["view", *args]).uri == "http://tomobluesky-tiled:8000"
        elif component == "tiled":
            assert command[:3] == ["tiled", "serve", "config"] and command[3] == "/etc/tomobluesky/tiled.yml"
        else:
            assert command == ["dask", component.split("-")[1]]
    assert len(images) == 1


# systemd ----------------------------------------------------------------------------------------
def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """[section] -> key -> values (a key may repeat in a unit file)."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNITS = sorted((DEPLOY / "systemd").glob("tomobluesky*"))


def test_units_cover_the_stack_and_workers_are_templates():
    names = {p.name for p in UNITS}
    assert names == {"tomobluesky.target", "tomobluesky-kafka.service", "tomobluesky-tiled.service",
                     "tomobluesky-reconstruction@.service", "tomobluesky-catalog@.service",
                     "tomobluesky-dask-scheduler.service", "tomobluesky-dask-worker@.service",
                     "tomobluesky-viewer.service"}
    for path in UNITS:
        if path.suffix == ".service":
            unit = _unit(path)
            assert unit["Install"]["WantedBy"] == ["tomobluesky.target"]
            assert unit["Service"]["Restart"][0] in ("always", "on-failure")
            assert unit["Service"]["User"] == ["tomobluesky"]


def test_no_secret_in_exec_lines_keys_from_credentials():
    from tomobluesky.workers import build_parser as worker_parser

    for path in UNITS:
        service = _unit(path).get("Service", {})
        for line in service.get("ExecStart", []) + service.get("ExecStartPre", []):
            for arg in shlex.split(line):
                assert not HEX_KEY.search(arg) and not SECRET_ARG.search(arg), (path.name, arg)
        if "@" in path.name and "tomobluesky.workers" in service["ExecStart"][0]:
            argv = shlex.split(service["ExecStart"][0])
            args = worker_parser().parse_args(argv[3:])
            assert path.name.startswith(f"tomobluesky-{args.kind}@")
            credential, source = service["LoadCredential"][0].split(":", 1)
            assert args.api_key_file == f"%d/{credential}" and source == "/etc/tomobluesky/keys/writer"
    tiled = _unit(DEPLOY / "systemd" / "tomobluesky-tiled.service")["Service"]
    assert tiled["EnvironmentFile"] == ["/etc/tomobluesky/tiled.env"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """The units as installed, with /opt/tomobluesky/bin pointing at this environment's executables
    (verify checks that every command exists)."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed: the Kafka unit's command cannot be checked")
    bin_dir = Path(sys.executable).parent
    for path in UNITS:
        text = path.read_text().replace("/opt/tomobluesky/bin/", f"{bin_dir}/").replace("/usr/bin/java", java)
        (tmp_path / path.name).write_text(text)
    targets = [str(tmp_path / p.name.replace("@.", "@1.")) for p in UNITS]
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *targets], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
