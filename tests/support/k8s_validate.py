"""Offline validation of weft's Kubernetes deployment files (run by k8s_validate.sh).

1. Every object in deploy/kubernetes/**/*.yaml (kustomizations and patches aside).
2. Each kustomization's strategic-merge patches applied to its resources (the sidecar
   example), so the patched Deployment is validated as Kubernetes would see it.
3. The Helm chart, linted (strict) and rendered with helm-python-sdk for every mode and a
   few value variants; in sidecar mode the patch printed by NOTES.txt is applied to a
   stand-in Deployment and validated too.

All of it goes through `kubernetes-validate --strict` for the oldest and newest Kubernetes
versions weft supports. Rendered output is written to OUT_DIR for tests/deploy.rs, which
checks the embedded weft configs and probes.

Usage: k8s_validate.py REPO OUT_DIR
"""

import copy
import glob
import os
import subprocess
import sys

import helm_python as helm
import yaml

KUBE_VERSIONS = ["1.30.0", "1.37.0"]
PATCH_MARK_BEGIN = "# --- weft-patch.yaml ---"
PATCH_MARK_END = "# --- end ---"

# (variant name, values, kinds the render must contain)
HELM_VARIANTS = [
    ("daemonset", {"mode": "daemonset"}, {"ConfigMap", "DaemonSet", "Service", "ServiceAccount"}),
    (
        "deployment",
        {"mode": "deployment"},
        {"ConfigMap", "Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler",
         "PodDisruptionBudget"},
    ),
    (
        "deployment-fixed-replicas",
        {
            "mode": "deployment",
            "autoscaling": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "headlessService": {"enabled": False},
            "serviceAccount": {"create": False},
            "lifecycle": {"preStopSleepSeconds": 0},
            "extraEnv": [{"name": "BACKEND_TOKEN", "value": "x"}],
            "podAnnotations": {"example.com/team": "observability"},
        },
        {"ConfigMap", "Deployment", "Service"},
    ),
    ("sidecar", {"mode": "sidecar"}, {"ConfigMap"}),
    ("sidecar-plain-container", {"mode": "sidecar", "sidecar": {"native": False}}, {"ConfigMap"}),
]


def fail(msg):
    print(f"k8s_validate: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def merge_key(items):
    """The strategic-merge key of a list of objects, if it has one we know."""
    for key in ("name", "mountPath", "containerPort"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def strategic_merge(base, patch):
    """Kubernetes' strategic merge for what our patches use: maps merge recursively, lists
    of named objects (containers, env, volumes, ...) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            out[k] = strategic_merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = merge_key(base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = copy.deepcopy(base)
        for item in patch:
            for i, existing in enumerate(out):
                if existing[key] == item[key]:
                    out[i] = strategic_merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def write_docs(path, docs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def apply_kustomization(kfile, out_dir):
    """Applies a kustomization's patches to its resources; returns the written files."""
    k = load_docs(kfile)[0]
    base = os.path.dirname(kfile)
    patches = [load_docs(os.path.join(base, p["path"]))[0] for p in k.get("patches", [])]
    written = []
    for res in k.get("resources", []):
        path = os.path.join(base, res)
        if not os.path.isfile(path):
            fail(f"{kfile}: resource {res} does not exist")
        docs = load_docs(path)
        patched = False
        for patch in patches:
            for i, d in enumerate(docs):
                if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]:
                    docs[i] = strategic_merge(d, patch)
                    patched = True
        if patched:
            rel = os.path.relpath(path, os.path.dirname(os.path.dirname(kfile)))
            dest = os.path.join(out_dir, "kubernetes-patched", rel.replace(os.sep, "__"))
            write_docs(dest, docs)
            written.append(dest)
    for patch in patches:
        applied = any(
            d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]
            for res in k.get("resources", [])
            for d in load_docs(os.path.join(base, res))
        )
        if not applied:
            fail(f"{kfile}: patch for {patch['kind']}/{patch['metadata']['name']} matches no resource")
    return written


def render_chart(chart_dir, out_dir):
    chart = helm.Chart.load(chart_dir)
    written = []
    for variant, values, want_kinds in HELM_VARIANTS:
        report = helm.lint(chart_dir, values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        if report.get("errors") or problems:
            fail(f"helm lint ({variant}): {report}")
        rendered = chart.render(values, name="weft", namespace="observability", is_install=True)
        kinds = set()
        dest_dir = os.path.join(out_dir, "helm", variant)
        os.makedirs(dest_dir, exist_ok=True)
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                with open(os.path.join(out_dir, "helm", f"{variant}-NOTES.txt"), "w") as f:
                    f.write(text)
                if values["mode"] == "sidecar":
                    written.append(sidecar_from_notes(text, values, dest_dir))
                continue
            docs = [d for d in yaml.safe_load_all(text) if d]
            if not docs:
                continue
            kinds.update(d["kind"] for d in docs)
            dest = os.path.join(dest_dir, os.path.basename(template))
            write_docs(dest, docs)
            written.append(dest)
        if not want_kinds <= kinds:
            fail(f"helm render ({variant}): expected {sorted(want_kinds)}, got {sorted(kinds)}")
        print(f"k8s_validate: helm {variant}: rendered {sorted(kinds)}")
    return written


def sidecar_from_notes(notes, values, dest_dir):
    """Extracts the patch NOTES.txt prints and applies it to a stand-in Deployment."""
    try:
        text = notes.split(PATCH_MARK_BEGIN, 1)[1].split(PATCH_MARK_END, 1)[0]
    except IndexError:
        fail("sidecar NOTES.txt does not contain the patch markers")
    patch = yaml.safe_load(text)
    sidecar = values.get("sidecar", {})
    name = sidecar.get("deploymentName", "my-app")
    container = sidecar.get("appContainerName", "my-app")
    app = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "observability"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": container, "image": "example/app:1"}]},
            },
        },
    }
    write_docs(os.path.join(dest_dir, "sidecar-patch.yaml"), [patch])
    dest = os.path.join(dest_dir, "sidecar-patched-deployment.yaml")
    write_docs(dest, [strategic_merge(app, patch)])
    return dest


def kubernetes_validate(files):
    cmd = [sys.executable, "-m", "kubernetes_validate", "--strict"]
    for v in KUBE_VERSIONS:
        cmd += ["-k", v]
    proc = subprocess.run(cmd + files, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    bad = [l for l in lines if l.startswith(("ERROR", "WARN", "FATAL"))]
    passed = [l for l in lines if l.startswith("INFO") and " passed " in l]
    if proc.returncode != 0 or bad:
        fail("kubernetes-validate:\n" + "\n".join(bad or lines))
    return len(passed)


def main():
    repo, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    kube_dir = os.path.join(repo, "deploy", "kubernetes")
    files = []
    kustomizations = []
    for path in sorted(glob.glob(os.path.join(kube_dir, "**", "*.yaml"), recursive=True)):
        name = os.path.basename(path)
        if name == "kustomization.yaml":
            kustomizations.append(path)
        elif not name.endswith("-patch.yaml"):
            files.append(path)
    if not files:
        fail(f"no manifests under {kube_dir}")
    for k in kustomizations:
        files += apply_kustomization(k, out_dir)
    files += render_chart(os.path.join(repo, "deploy", "helm", "weft"), out_dir)
    n = kubernetes_validate(files)
    print(
        f"k8s_validate: {n} object validations passed ({len(files)} files, Kubernetes "
        f"{' and '.join(KUBE_VERSIONS)}, strict)"
    )


if __name__ == "__main__":
    main()
