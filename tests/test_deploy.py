"""The container image and the Kubernetes CronJob: valid, non-root, one shard per pod, secrets
from Secrets. The image is built where a container engine answers; the manifest goes through
``kubectl apply --dry-run=client`` where a cluster answers, else the Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helpers import ROOT
from tests.pods import podman

MANIFEST = ROOT / "deploy" / "cronjob.yaml"
CONTAINERFILE = ROOT / "Containerfile"


def _documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _cronjob() -> dict[str, Any]:
    [cronjob] = [d for d in _documents() if d["kind"] == "CronJob"]
    return cronjob


def _answers(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_the_manifest_is_valid_kubernetes() -> None:
    """Every document validates (strictly: no unknown field) against Kubernetes 1.32's schemas,
    or against a live cluster's with kubectl when one answers."""
    if shutil.which("kubectl") and _answers(["kubectl", "version"]):
        applied = subprocess.run(
            ["kubectl", "apply", "--dry-run=client", "-f", str(MANIFEST)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
    for document in _documents():
        kubernetes_validate.validate(document, "1.32.0", strict=True)


def test_the_cronjob_never_overlaps_and_runs_one_community_per_pod(tmp_path: Path) -> None:
    """concurrencyPolicy Forbid; an indexed Job with one completion per community, each pod
    sending to one community only (the rate limit per community stays exact)."""
    spec = _cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    [container] = job["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    communities = env["COMMUNITIES"]["value"].split()
    assert job["completions"] == len(communities) == len(set(communities))
    script = container["args"][0]
    assert "--community" in script
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "job.toml").write_text(config["data"]["job.toml"])
    on_host = script.replace("/tmp/", f"{tmp_path}/").replace("/config/", f"{tmp_path}/config/")
    picked = [
        subprocess.run(
            [
                "sh",
                "-c",
                on_host.replace("exec reconcile run", "echo"),
            ],
            env={"COMMUNITIES": " ".join(communities), "JOB_COMPLETION_INDEX": str(index)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for index in range(len(communities))
    ]
    assert picked == communities


def test_secrets_come_from_kubernetes_secrets_and_the_pod_is_not_root() -> None:
    """Keys and the database URL/password are secretKeyRef env vars (never in the ConfigMap);
    the pod runs as a non-root user without privilege escalation."""
    pod = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("RECONCILE_LEDGER_URL", "PGPASSWORD", "RETURNING_AI_KEY_ACME"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    assert "key =" not in config["data"]["job.toml"].replace("api_key_env =", "")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_containerfile_is_slim_non_root_and_frozen() -> None:
    """The base is an ARG defaulting to the official slim image; frozen install; uid 10001."""
    text = CONTAINERFILE.read_text()
    assert "ARG BASE=docker.io/library/python:3.11-slim" in text
    assert "FROM ${BASE}" in text
    assert "uv sync --quiet --frozen" in text
    assert "USER 10001" in text


def test_the_image_runs_read_only_as_uid_10001(image: str) -> None:
    """``podman run --rm --read-only --tmpfs /tmp IMAGE --version`` prints the version, as uid
    10001, with no pip, compiler or package cache in the image."""
    ran = podman("run", "--rm", "--read-only", "--tmpfs", "/tmp", image, "--version")
    assert ran.returncode == 0 and ran.stdout.startswith("reconcile "), ran.stderr
    script = (
        "id -u; command -v pip pip3 gcc cc make uv || true; "
        "ls -d /root/.cache /home/reconcile/.cache /var/lib/apt/lists/*_Packages 2>/dev/null || true; "
        "find /app/.venv -name '*.pyc' | head -1"
    )
    inside = podman("run", "--rm", "--read-only", "--entrypoint", "sh", image, "-c", script)
    assert inside.returncode == 0, inside.stderr
    lines = inside.stdout.split()
    assert lines[0] == "10001"
    assert len(lines) == 2 and lines[1].endswith(".pyc"), lines  # bytecode, nothing else found


@pytest.mark.parametrize(
    ("where", "mistake"),
    [
        ("a field name typo", ("concurrencyPolicy: Forbid", "concurrencyPolcy: Forbid")),
        ("a wrong type", ("completions: 2", 'completions: "two"')),
        ("a container field typo", ("readOnlyRootFilesystem:", "readOnlyRootFileSystem:")),
        ("a wrong type in a pod", ("runAsUser: 10001", "runAsUser: [10001]")),
    ],
)
def test_a_manifest_error_fails_the_schema_check(where: str, mistake: tuple[str, str]) -> None:
    """A copy of the manifest with one mistake (a typo in a field name, a wrong type) is refused
    by the offline Kubernetes schemas the manifest test uses."""
    text = MANIFEST.read_text()
    assert mistake[0] in text, where
    broken = [d for d in yaml.safe_load_all(text.replace(mistake[0], mistake[1], 1)) if d]
    failures = []
    for document in broken:
        try:
            kubernetes_validate.validate(document, "1.32.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(str(error))
    assert len(failures) == 1, where
