// Validates Kubernetes objects offline against the API schemas (kubernetes-models) and the
// CRD schemas of Istio and the Prometheus operator (@kubernetes-models/*).
//
//   node validate-manifests.mjs < objects.json     (a JSON array of objects)
//
// Prints a JSON array, one entry per object: {"object": "Kind/name", "error": null | "..."}.
// An object whose apiVersion/kind has no model is an error: nothing passes unchecked.
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
  try {
    new model(obj).validate();
    return { object: name, error: null };
  } catch (e) {
    return { object: name, error: String(e.message ?? e) };
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) results.push(await check(obj));
process.stdout.write(JSON.stringify(results) + "\n");
process.exit(results.every((r) => r.error === null) ? 0 : 1);
