// Validates Kubernetes objects offline against the API schemas (kubernetes-models) and the
// CRD schemas of Istio and the Prometheus operator (@kubernetes-models/*).
//
//   node validate-manifests.mjs < objects.json     (a JSON array of objects)
//
// Prints a JSON array, one entry per object: {"object": "Kind/name", "error": null | "..."}.
// An object whose apiVersion/kind has no model is an error: nothing passes unchecked.
// Unknown fields are errors too, as `kubectl apply` (strict field validation) refuses them: the
// compiled schemas accept any property they do not name, so each object is validated through
// proxies that record which properties the schema reads. In an object whose properties the
// schema reads by name, a property it never read is unknown; an object it reads nothing of
// (x-kubernetes-preserve-unknown-fields, e.g. an EnvoyFilter patch value) or enumerates (a map
// such as labels) is free-form.
// Exit code 0 when every object is valid, 1 otherwise.
import { readFileSync } from "node:fs";

const PACKAGES = [
  [/\.istio\.io$/, "@kubernetes-models/istio"],
  [/^monitoring\.coreos\.com$/, "@kubernetes-models/prometheus-operator"],
  [/^$|^[a-z]+$|\.k8s\.io$/, "kubernetes-models"],
];

function modulePath(apiVersion, kind) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const found = PACKAGES.find(([re]) => re.test(group));
  if (!found || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  return `${found[1]}/${apiVersion}/${kind}`;
}

function tracked(value, path, nodes) {
  if (value === null || typeof value !== "object") return value;
  const node = { path, value, read: new Set(), enumerated: false };
  nodes.push(node);
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return Reflect.get(target, key, receiver);
      node.read.add(key);
      if (!children.has(key)) children.set(key, tracked(target[key], `${path}.${key}`, nodes));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.has(target, key);
    },
    getOwnPropertyDescriptor(target, key) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    ownKeys(target) {
      node.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(nodes) {
  const unknown = [];
  for (const node of nodes) {
    if (Array.isArray(node.value) || node.enumerated || node.read.size === 0) continue;
    for (const key of Object.keys(node.value)) {
      if (!node.read.has(key)) unknown.push(`${node.path}.${key}`.replace(/^\./, ""));
    }
  }
  return unknown;
}

async function check(obj) {
  const name = `${obj?.kind}/${obj?.metadata?.name}`;
  const path = modulePath(String(obj?.apiVersion ?? ""), String(obj?.kind ?? ""));
  if (path === null) return { object: name, error: `no schema for apiVersion ${obj?.apiVersion}` };
  let model;
  try {
    model = (await import(path))[obj.kind];
  } catch (e) {
    return { object: name, error: `no schema for ${obj.apiVersion} ${obj.kind} (${path})` };
  }
  const nodes = [];
  const instance = Object.create(model.prototype);
  for (const key of Object.keys(obj)) instance[key] = tracked(obj[key], key, nodes);
  try {
    instance.validate();
  } catch (e) {
    return { object: name, error: String(e.message ?? e) };
  }
  const unknown = unknownFields(nodes);
  return { object: name, error: unknown.length ? `unknown field(s): ${unknown.join(", ")}` : null };
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) results.push(await check(obj));
process.stdout.write(JSON.stringify(results) + "\n");
process.exit(results.every((r) => r.error === null) ? 0 : 1);
