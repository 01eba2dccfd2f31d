"""The pods of one night of deploy/cronjob.yaml, run with podman as the manifest says.

A pod's container gets the manifest's command (as the entrypoint), args, env (each
``secretKeyRef`` given its value from the secrets the test holds), ``JOB_COMPLETION_INDEX``, the
ConfigMap's files mounted where the manifest mounts them, ``emptyDir`` volumes as tmpfs, the
``persistentVolumeClaim`` as a host folder, and the pod's securityContext (user, group,
read-only root, dropped capabilities, no privilege escalation). Only two things differ from a
cluster: the image is the one just built, and the network is the host's (the sandbox and the
PostgreSQL ledger listen on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

MANIFEST = ROOT / "deploy" / "cronjob.yaml"
CONTAINERS_CONF = ROOT / "deploy" / "containers.conf"


def documents(text: str | None = None) -> list[dict[str, Any]]:
    source = MANIFEST.read_text() if text is None else text
    return [d for d in yaml.safe_load_all(source) if d]


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Night:
    """One night's pods: ``argv(index)`` is the podman command of the pod with that index."""

    image: str
    secrets: dict[str, str]
    folder: Path
    base_url: str

    def __post_init__(self) -> None:
        docs = documents()
        [self.cronjob] = [d for d in docs if d["kind"] == "CronJob"]
        self.config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        self.job = self.cronjob["spec"]["jobTemplate"]["spec"]
        self.pod = self.job["template"]["spec"]
        [self.container] = self.pod["containers"]

    @property
    def completions(self) -> int:
        return int(self.job["completions"])

    def volume(self, name: str) -> Path:
        """The host folder a persistentVolumeClaim volume is, shared by every pod."""
        path = self.folder / "volumes" / name
        if not path.exists():
            path.mkdir(parents=True)
            os.chown(path, self.pod["securityContext"]["runAsUser"], -1)
        return path

    def _config_map(self, name: str) -> Path:
        """The ConfigMap as a folder, written once per night: pods start side by side, and
        re-writing it for the second pod removed the folder the first was mounting."""
        path = self.folder / "config-maps" / name
        if path.exists():
            return path
        path.mkdir(parents=True)
        for file, text in self.config_maps[name]["data"].items():
            # The one change to the ConfigMap: the vendor's URL is the sandbox's.
            text = re.sub(r'(?m)^base_url = ".*"$', f"base_url = {json.dumps(self.base_url)}", text)
            (path / file).write_text(text)
            (path / file).chmod(0o444)
        return path

    def _mounts(self) -> list[str]:
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        found: list[str] = []
        for mount in self.container["volumeMounts"]:
            volume, target = volumes[mount["name"]], mount["mountPath"]
            if "configMap" in volume:
                found += ["-v", f"{self._config_map(volume['configMap']['name'])}:{target}:ro"]
            elif "emptyDir" in volume:
                found += ["--tmpfs", f"{target}:rw,mode=1777"]
            elif "persistentVolumeClaim" in volume:
                ro = ":ro" if mount.get("readOnly") else ""
                found += ["-v", f"{self.volume(volume['name'])}:{target}{ro}"]
            else:
                raise AssertionError(f"volume {mount['name']}: a kind this test does not run")
        return found

    def _env(self, index: int) -> list[str]:
        found = ["-e", f"JOB_COMPLETION_INDEX={index}"]
        for variable in self.container["env"]:
            if "value" in variable:
                value = variable["value"]
            else:
                value = self.secrets[variable["valueFrom"]["secretKeyRef"]["key"]]
            found += ["-e", f"{variable['name']}={value}"]
        return found

    def _security(self) -> list[str]:
        pod, box = self.pod["securityContext"], self.container.get("securityContext", {})
        user = box.get("runAsUser", pod["runAsUser"])
        group = box.get("runAsGroup", pod.get("runAsGroup", pod.get("fsGroup", user)))
        found = ["--user", f"{user}:{group}"]
        if box.get("readOnlyRootFilesystem"):
            found += ["--read-only", "--read-only-tmpfs=false"]  # /tmp etc. only as mounted
        if box.get("allowPrivilegeEscalation") is False:
            found += ["--security-opt", "no-new-privileges"]
        for capability in box.get("capabilities", {}).get("drop", []):
            found += ["--cap-drop", capability.lower()]
        return found

    def argv(self, index: int, name: str) -> list[str]:
        command = self.container.get("command")
        entrypoint = ["--entrypoint", json.dumps(command)] if command else []
        return [
            "podman",
            "run",
            "--name",
            name,
            "--network=host",
            *self._security(),
            *self._env(index),
            *self._mounts(),
            *entrypoint,
            self.image,
            *self.container.get("args", []),
        ]

    def start(self, index: int, name: str) -> subprocess.Popen[str]:
        podman("rm", "--force", name)
        return subprocess.Popen(
            self.argv(index, name),
            env=engine_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
