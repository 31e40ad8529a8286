"""The cluster configs in cluster/, validated as far as this machine can.

- The Ray cluster launcher YAML against Ray's own schema (the one `ray up` applies).
- Every standard Kubernetes object, and the pod templates inside the RayCluster and
  RayJob, against the Kubernetes API schemas (kubernetes-validate, offline). The
  KubeRay objects' own fields are checked against the field names of the KubeRay API.
- Each entrypoint is `python jobs/score.py CONFIG` with a CONFIG that is in the repo and
  loads with `load_config` (its inputs are on the cluster's volume: not looked for here).
  The GPUs and CPUs that the config's `resources` ask for fit the worker groups. The Ray
  version, image and token auth are the same everywhere.
- What `ray job submit --working-dir .` would upload with cluster/runtime_env.yaml:
  the code and configs, and none of the local state.
- cluster/README.md covers submit, watch, fetch, schedule, token auth and PATH, and
  names only files that exist.
"""

from __future__ import annotations

import re
import shlex
import tomllib
import zipfile
from pathlib import Path

import pytest
import ray
import yaml

from synque_ray.config import JobConfig, load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
IMAGE = "ghcr.io/your-org/synque-ray:0.1.0"
K8S_VERSION = "1.33.0"

# Field names of the KubeRay ray.io/v1 API (KubeRay 1.5 / 1.6): a typo in a manifest is
# an unknown field, which the API server would drop or reject.
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
    "headServiceAnnotations", "suspend", "managedBy", "gcsFaultToleranceOptions", "authOptions",
    "upgradeStrategy",
}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template", "resources",
                     "labels"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                       "template", "scaleStrategy", "suspend", "idleTimeoutSeconds", "resources", "labels"}
AUTOSCALER_FIELDS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
                     "idleTimeoutSeconds", "upscalingMode", "version"}
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend",
}


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(path: Path, kind: str) -> dict:
    found = [doc for doc in _docs(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def _entrypoint_config(command: str) -> JobConfig:
    """`python jobs/score.py CONFIG [--fresh]`: the script exists, CONFIG is in the repo and loads."""
    words = shlex.split(command)
    assert words[:2] == ["python", "jobs/score.py"], command
    assert (REPO / "jobs/score.py").is_file()
    config_path = words[2]
    assert not Path(config_path).is_absolute(), "the config must travel with the working dir"
    assert config_path.startswith("configs/"), config_path
    assert set(words[3:]) <= {"--fresh"}, command
    return load_config(REPO / config_path, check_inputs=False)


def _lens_gpus_per_actor(config: JobConfig) -> float:
    r = config.resources
    return max(r.lens_gpus, float(r.tensor_parallel)) if r.lens_gpus else 0.0


def _check_gpu_budget(config: JobConfig, gpus_per_node: float, max_nodes: int, cpus_per_node: float, where: str):
    r = config.resources
    lens_per_actor = _lens_gpus_per_actor(config) if "lens" in config.proxies else 0.0
    assert r.embed_gpus <= gpus_per_node, f"{where}: an embedding actor wants more GPUs than a node has"
    assert lens_per_actor <= gpus_per_node, f"{where}: a LENS actor wants more GPUs than a node has"
    if "lens" in config.proxies and r.tensor_parallel > 1:
        assert r.lens_gpus >= r.tensor_parallel, f"{where}: a LENS actor needs a GPU per tensor-parallel rank"
    # Embedding and LENS actors may hold their GPUs at the same time: both must fit.
    wanted = r.embed_actors * r.embed_gpus + (r.lens_actors * lens_per_actor if "lens" in config.proxies else 0)
    assert 0 < wanted <= gpus_per_node * max_nodes, (
        f"{where}: the config asks for {wanted} GPUs, the GPU group has at most {gpus_per_node * max_nodes}"
    )
    # CPUs: the pipeline gives a GPU embedding actor up to 4 CPUs, a LENS actor needs at
    # least 1; the actors that fit a node's GPUs must fit its CPUs too.
    embed_per_node = min(r.embed_actors, int(gpus_per_node // r.embed_gpus)) if r.embed_gpus else 0
    lens_per_node = min(r.lens_actors, int(gpus_per_node // lens_per_actor)) if lens_per_actor else 0
    assert cpus_per_node >= 4 * embed_per_node + lens_per_node + r.proxy_cpus, f"{where}: too few CPUs per node"


def _k8s_validate(doc: dict, where: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{where}: {err.message} at {'/'.join(map(str, err.absolute_path))}")


def _pod_from_template(template: dict, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template.get("metadata", {})},
            "spec": template["spec"]}


def _gpus(container: dict) -> float:
    limits = container.get("resources", {}).get("limits", {})
    return float(limits.get("nvidia.com/gpu", 0))


def _cpus(container: dict) -> float:
    value = str(container.get("resources", {}).get("limits", {}).get("cpu", "0"))
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


# ---------------------------------------------------------------- shared facts


def test_ray_version_is_the_same_everywhere() -> None:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_pin = next(dep for dep in pins if dep.replace(" ", "").startswith("ray["))
    assert ray_pin.split("==")[1].split()[0] == ray.__version__
    base = re.search(r"^FROM\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py311"), base
    cluster = _one(KUBERAY / "raycluster.yaml", "RayCluster")
    assert cluster["spec"]["rayVersion"] == ray.__version__


def test_cluster_job_config_loads_and_uses_the_shared_volume() -> None:
    config = load_config(REPO / "configs/cluster-sentiment.yaml", check_inputs=False)
    assert config.resources.embed_gpus > 0 and config.resources.lens_gpus > 0  # a GPU config
    paths = [*config.real.samples, config.candidates.path, config.output, config.lens.scorer]
    assert all(p.startswith("/data/") for p in paths), paths


def test_runtime_env_uploads_the_code_and_no_local_state(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import create_package
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    RuntimeEnv(**runtime_env)  # Ray's own validation of the fields
    assert "working_dir" not in runtime_env  # given by --working-dir
    # Build the package exactly as `ray job submit --working-dir .` does, but without the
    # help of .gitignore: the excludes alone must keep local state out.
    package = tmp_path / "working_dir.zip"
    create_package(str(REPO), package, include_gitignore=False, excludes=runtime_env["excludes"])
    names = zipfile.ZipFile(package).namelist()
    assert {"jobs/score.py", "configs/cluster-sentiment.yaml", "synque_ray/pipeline.py"} <= set(names)
    for local in (".venv/", "results/", "demo-data/", ".git/", "tests/", ".mypy_cache/", ".ruff_cache/"):
        assert not any(name.startswith(local) for name in names), local
    assert not any("__pycache__" in name for name in names)
    assert package.stat().st_size < 20 * 1024 * 1024


# ---------------------------------------------------------------- Ray cluster launcher


def test_cluster_launcher_config() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(config)
    validate_config(prepare_config(config))  # with the provider's defaults filled in, as `ray up` does

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head.get("max_workers", 0) == 0
    gpu_groups = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert len(gpu_groups) == 1
    (gpu,) = gpu_groups.values()
    assert gpu["min_workers"] < gpu["max_workers"] <= config["max_workers"]  # it autoscales
    assert config["docker"]["image"] == IMAGE

    # Token auth on every node, and the token file on every node.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert len(start) == 1 and "RAY_AUTH_MODE=token" in start[0], key
    assert "--head" in " ".join(config["head_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"]
    # /data is where the job config reads and writes.
    assert any(":/data" in option for option in config["docker"]["run_options"])

    job = load_config(REPO / "configs/cluster-sentiment.yaml", check_inputs=False)
    for path in [*job.real.samples, job.candidates.path]:
        assert any(path.startswith(target) for target in config["file_mounts"]), path
    _check_gpu_budget(job, gpu["resources"]["GPU"], gpu["max_workers"], gpu["resources"]["CPU"], "ray-cluster.yaml")
    assert head["resources"]["CPU"] >= job.resources.proxy_cpus


# ---------------------------------------------------------------- KubeRay


def _check_raycluster_spec(spec: dict, where: str) -> JobConfig:
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS, f"{where}: unknown fields {set(spec) - RAYCLUSTER_SPEC_FIELDS}"
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP_FIELDS, where
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER_FIELDS, where
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"] == {"mode": "token"}, f"{where}: token authentication must be on"
    assert spec["enableInTreeAutoscaling"] is True

    head = spec["headGroupSpec"]
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] == IMAGE
    assert _gpus(head_container) == 0 and head["rayStartParams"].get("num-gpus") == "0"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # a map of strings

    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, f"{where}: unknown fields {set(group) - WORKER_GROUP_FIELDS}"
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] == IMAGE
        requests = container["resources"]["requests"]
        assert requests.get("nvidia.com/gpu") == container["resources"]["limits"].get("nvidia.com/gpu")
        if _gpus(container):
            gpu_groups.append((group, container))
    assert len(gpu_groups) == 1
    group, container = gpu_groups[0]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert group["minReplicas"] < group["maxReplicas"]  # it autoscales

    # Every pod mounts the shared volume at /data.
    for template in [head["template"], *(g["template"] for g in spec["workerGroupSpecs"])]:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for c in template["spec"]["containers"] for m in c["volumeMounts"]}
        assert claims.get(mounts.get("/data")) == "synque-data", where
    return group, container


def test_raycluster_manifest() -> None:
    cluster = _one(KUBERAY / "raycluster.yaml", "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    group, container = _check_raycluster_spec(cluster["spec"], "raycluster.yaml")
    job = load_config(REPO / "configs/cluster-sentiment.yaml", check_inputs=False)
    _check_gpu_budget(job, _gpus(container), group["maxReplicas"], _cpus(container), "raycluster.yaml")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert _cpus(head) >= job.resources.proxy_cpus


def test_rayjob_manifest() -> None:
    job = _one(KUBERAY / "rayjob.yaml", "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown fields {set(spec) - RAYJOB_SPEC_FIELDS}"
    assert "generateName" in job["metadata"] and "name" not in job["metadata"]  # created anew by the cron
    config = _entrypoint_config(spec["entrypoint"])

    # The project is the runtime environment: a zip archive of it as working_dir.
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)
    assert re.match(r"^(https|s3|gs)://\S+\.zip$", runtime_env["working_dir"]), runtime_env["working_dir"]

    # Same cluster as raycluster.yaml, torn down after the run, bounded in time.
    assert spec["rayClusterSpec"] == _one(KUBERAY / "raycluster.yaml", "RayCluster")["spec"]
    group, container = _check_raycluster_spec(spec["rayClusterSpec"], "rayjob.yaml")
    _check_gpu_budget(config, _gpus(container), group["maxReplicas"], _cpus(container), "rayjob.yaml")
    assert spec["shutdownAfterJobFinishes"] is True
    assert 0 < spec["activeDeadlineSeconds"]


def _period_seconds(schedule: str) -> int:
    """The period of a plain daily (`M H * * *`) or weekly (`M H * * D`) schedule."""
    minute, hour, day, month, weekday = schedule.split()
    assert minute.isdigit() and hour.isdigit() and day == "*" and month == "*", schedule
    return 86400 if weekday == "*" else 7 * 86400


def test_rescore_cronjob_creates_the_rayjob() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (KUBERAY / resource).is_file(), resource
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["rayjob.yaml"]

    path = KUBERAY / "rescore-cronjob.yaml"
    cron = _one(path, "CronJob")
    period = _period_seconds(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = [*container.get("command", []), *container.get("args", [])]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (volume_name,) = [name for name, v in volumes.items() if v.get("configMap", {}).get("name") == generator["name"]]
    assert command == ["kubectl", "create", "-f", f"{mounts[volume_name]}/rayjob.yaml"]

    # The submitter's service account may create RayJobs.
    account = _one(path, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    binding = _one(path, "RoleBinding")
    assert {"kind": "ServiceAccount", "name": account} in binding["subjects"]
    role = _one(path, "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert any("ray.io" in rule["apiGroups"] and "rayjobs" in rule["resources"] and "create" in rule["verbs"]
               for rule in role["rules"])

    # The RayJob it creates ends before the next one starts.
    rayjob = _one(KUBERAY / "rayjob.yaml", "RayJob")
    assert rayjob["spec"]["activeDeadlineSeconds"] < period


def test_kubernetes_objects_and_ray_pod_templates_match_the_kubernetes_schemas() -> None:
    """Every standard object in cluster/kuberay/, and every pod template inside the
    RayCluster and the RayJob, against the Kubernetes API's schemas (strict: unknown
    fields fail). kubernetes-validate ships the schemas, so this works offline."""
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    standard = 0
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _docs(path):
            if doc["apiVersion"].startswith("kustomize.config.k8s.io/"):
                continue
            if doc["apiVersion"].startswith("ray.io/"):
                spec = doc["spec"].get("rayClusterSpec", doc["spec"])
                templates = [("head", spec["headGroupSpec"]["template"])]
                templates += [(g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
                for name, template in templates:
                    _k8s_validate(_pod_from_template(template, name), f"{path.name} {doc['kind']} {name} pod")
                continue
            _k8s_validate(doc, f"{path.name} {doc['kind']}")
            standard += 1
    assert standard >= 7  # PVC, Pod, Job, ServiceAccount, Role, RoleBinding, CronJob


def test_images_and_shared_volume() -> None:
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _docs(path):
            spec = doc.get("spec", {})
            pod = spec.get("template", {}).get("spec") or (spec if doc.get("kind") == "Pod" else {})
            for container in pod.get("containers", []):
                if "synque-ray" in container["image"]:
                    assert container["image"] == IMAGE, f"{path.name}: {container['image']}"
    claim = _one(KUBERAY / "storage.yaml", "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "synque-data" and "ReadWriteMany" in claim["spec"]["accessModes"]


# ---------------------------------------------------------------- README


def test_cluster_readme_covers_the_operations_and_names_real_files() -> None:
    text = (CLUSTER / "README.md").read_text()
    assert "## Run on a cluster" in text
    for heading in ("### Submit", "### Watch", "### Fetch results", "### Schedule"):
        assert heading in text, heading
    for needed in ("RAY_AUTH_MODE=token", "PATH", "ray job submit", "ray job logs", "ray job status",
                   "--working-dir .", "--runtime-env cluster/runtime_env.yaml", "jobs/score.py",
                   "kubectl create -f cluster/kuberay/rayjob.yaml", "kubectl apply -k cluster/kuberay/"):
        assert needed in text, needed
    named = set(re.findall(r"(?<![\w./-])((?:cluster|configs|jobs)/[\w./-]*\w)", text))
    named |= {f"cluster/{name}" for name in re.findall(r"`((?:kuberay/)?[\w-]+\.(?:yaml|md)|Dockerfile)`", text)}
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing, f"cluster/README.md names files that do not exist: {missing}"
