"""A small kustomize: renders deploy/kubernetes/ the way `kubectl apply -k` would, offline.

kubectl is not part of the test environment, so this implements exactly the kustomization
features the shipped kustomizations use, and refuses every other field (a kustomization that
grows a feature fails here until the feature is added, instead of being rendered wrongly):

- `resources`: YAML files (multi-document) and directories holding a kustomization.yaml;
- `namespace`: set on every namespaced object;
- `labels` with `pairs` only (added to metadata.labels, as kustomize does without
  includeSelectors / includeTemplates);
- `generatorOptions.disableNameSuffixHash: true` (required where ConfigMaps are created: no
  name hashes to compute; overlays that merge or replace keep the base's name);
- `configMapGenerator` with `name`, `files` (`path` or `key=path`) and `behavior`
  (create, merge, replace — merge/replace act on the base's generated ConfigMap);
- `patches` with `path` and `target` (kind, name) holding a JSON 6902 patch (add, replace,
  remove; `-` appends to a list).

Checked by hand against `kubectl kustomize` (kustomize v5.5): same objects, field for field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "generatorOptions", "configMapGenerator", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render, or an invalid one."""


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _generated_configmap(root: Path, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    unknown = set(spec) - {"name", "files", "behavior"}
    if unknown:
        raise KustomizeError(f"{root}: configMapGenerator fields not supported: {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, rel = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise KustomizeError(f"{root}: {rel} is outside the kustomization's directory")
        data[key or path.name] = path.read_text()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}
    return spec.get("behavior", "create"), cm


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} does not start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_json6902(obj: dict[str, Any], ops: list[dict[str, Any]], where: Path) -> None:
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[index]
            else:
                raise KustomizeError(f"{where}: op {kind!r} not supported")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in node:
                raise KustomizeError(f"{where}: replace of missing {op['path']}")
            node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[last]
        else:
            raise KustomizeError(f"{where}: op {kind!r} not supported")


def render(root: Path) -> list[dict[str, Any]]:
    """Every object of the kustomization in `root`, transformed."""
    kfile = root / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - KNOWN
    if unknown:
        raise KustomizeError(f"{kfile}: fields not supported by tests/e2e/kustomize.py: {sorted(unknown)}")
    creates = any(g.get("behavior", "create") == "create" for g in k.get("configMapGenerator", []))
    if k.get("generatorOptions", {}) != ({"disableNameSuffixHash": True} if creates else {}):
        raise KustomizeError(
            f"{kfile}: generatorOptions must be disableNameSuffixHash: true, where ConfigMaps are created"
        )
    objects: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        path = root / res
        objects.extend(render(path) if path.is_dir() else _load_docs(path))
    for spec in k.get("configMapGenerator", []):
        behavior, cm = _generated_configmap(root, spec)
        existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm["metadata"]["name"]]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"{kfile}: ConfigMap {cm['metadata']['name']} already exists")
            objects.append(cm)
        elif behavior in ("merge", "replace") and len(existing) == 1:
            if behavior == "replace":
                existing[0]["data"] = cm["data"]
            else:
                existing[0]["data"].update(cm["data"])
        else:
            raise KustomizeError(f"{kfile}: behavior {behavior!r} for ConfigMap {cm['metadata']['name']}")
    for patch in k.get("patches", []):
        if set(patch) != {"path", "target"} or set(patch["target"]) - {"kind", "name"}:
            raise KustomizeError(f"{kfile}: patches need exactly path and target (kind, name)")
        ops = yaml.safe_load((root / patch["path"]).read_text())
        if not isinstance(ops, list):
            raise KustomizeError(f"{kfile}: {patch['path']} is not a JSON 6902 patch (a list of operations)")
        targets = [
            o
            for o in objects
            if all(
                o.get("kind") == v if f == "kind" else o["metadata"].get("name") == v
                for f, v in patch["target"].items()
            )
        ]
        if len(targets) != 1:
            raise KustomizeError(f"{kfile}: patch target {patch['target']} matches {len(targets)} objects")
        _apply_json6902(targets[0], ops, root / patch["path"])
    for group in k.get("labels", []):
        if set(group) != {"pairs"}:
            raise KustomizeError(f"{kfile}: labels support `pairs` only")
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(group["pairs"])
    if "namespace" in k:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`)."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise KustomizeError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]
