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


def test_the_cronjob_never_overlaps_and_runs_one_community_per_pod() -> None:
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
    picked = [
        subprocess.run(
            ["sh", "-c", script.replace("exec reconcile run", "echo")],
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
    assert "uv sync --frozen" in text
    assert "USER 10001" in text


def _engine() -> str | None:
    for engine in ("podman", "docker"):
        if shutil.which(engine) and _answers([engine, "info"]):
            return engine
    return None


def test_the_image_builds_and_runs(tmp_path: Path) -> None:
    """Built with the engine at hand; ``reconcile --version`` runs in it as a non-root user."""
    engine = _engine()
    if engine is None:
        pytest.skip(
            "no container engine answers here (docker/podman missing or its daemon not "
            "running): the image build is checked where one is available"
        )
    tag = "reconcile-test:latest"
    built = subprocess.run(
        [engine, "build", "-f", str(CONTAINERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    ran = subprocess.run(
        [engine, "run", "--rm", "--entrypoint", "sh", tag, "-c", "id -u && reconcile --version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    uid, version = ran.stdout.split("\n")[:2]
    assert uid == "10001" and version.startswith("reconcile ")
