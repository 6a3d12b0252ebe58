"""Checks real HTTP responses of quantd against openapi.yaml (OpenAPI 3.0).

A small validator for the JSON-schema subset the spec uses: $ref, type, nullable, enum,
required, properties, additionalProperties, items, allOf/oneOf/anyOf, minimum/maximum,
pattern, format date-time. allOf parts are folded into one schema first, so an
additionalProperties: false in one part knows the properties of the others. Used by
tests/e2e/e2e.py on every response it receives (the JSON artifacts metrics.json and
footprint.json included: GET /v1/artifacts/{id} documents them as Metrics / Footprint) and
on every document it downloads (check_document). strictness() lists object schemas that
do not say whether undocumented properties are allowed; self_test() proves the validator
rejects one. `python3 openapi_check.py [metrics.json|footprint.json ...]` alone checks that
every route in api/routes.def is described, the spec lints, and validates the files given.
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Spec:
    def __init__(self, path=os.path.join(ROOT, "openapi.yaml")):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.paths = []
        for tmpl, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", tmpl) + "/?$"
            self.paths.append((re.compile(rx), tmpl, item))

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part]
            seen += 1
            if seen > 50:
                raise ValueError("$ref loop at " + ref)
        return node

    def operation(self, method, path):
        path = path.split("?", 1)[0]
        for rx, tmpl, item in self.paths:
            if rx.match(path):
                op = item.get(method.lower())
                return tmpl, op
        return None, None

    # ---- schema validation ----
    def validate(self, schema, value, where="$"):
        errs = []
        self._v(schema, value, where, errs)
        return errs

    def merged(self, s):
        """s with its allOf parts folded in: properties and required joined, and
        additionalProperties false when any part says false."""
        s = self.resolve(s)
        if not isinstance(s, dict) or "allOf" not in s:
            return s
        m = {k: v for k, v in s.items() if k != "allOf"}
        props = dict(m.get("properties", {}))
        req = list(m.get("required", []))
        ap = m.get("additionalProperties")
        for part in s["allOf"]:
            part = self.merged(part)
            for k, v in part.items():
                if k == "properties":
                    props.update(v)
                elif k == "required":
                    req += [r for r in v if r not in req]
                elif k == "additionalProperties":
                    if ap is None or ap is True or v is False:
                        ap = v
                elif k not in m:
                    m[k] = v
        if props:
            m["properties"] = props
        if req:
            m["required"] = req
        if ap is not None:
            m["additionalProperties"] = ap
        return m

    def _v(self, s, v, where, errs):
        s = self.merged(s)
        if s is None or s == {}:
            return
        if v is None:
            if s.get("nullable") or "type" not in s and not any(k in s for k in ("allOf", "oneOf", "anyOf", "properties")):
                return
            errs.append("%s: null but not nullable" % where)
            return
        for key in ("oneOf", "anyOf"):
            if key in s:
                oks = [not self.validate(sub, v, where) for sub in s[key]]
                n = sum(oks)
                if (key == "oneOf" and n != 1) or (key == "anyOf" and n == 0):
                    errs.append("%s: matches %d of the %s alternatives" % (where, n, key))
        t = s.get("type")
        if t:
            ok = {
                "object": isinstance(v, dict),
                "array": isinstance(v, list),
                "string": isinstance(v, str),
                "integer": isinstance(v, int) and not isinstance(v, bool),
                "number": isinstance(v, (int, float)) and not isinstance(v, bool),
                "boolean": isinstance(v, bool),
            }[t]
            if not ok:
                errs.append("%s: expected %s, got %s" % (where, t, type(v).__name__))
                return
        if "enum" in s and v not in s["enum"]:
            errs.append("%s: %r not in enum %r" % (where, v, s["enum"]))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "minimum" in s and v < s["minimum"]:
                errs.append("%s: %r < minimum %r" % (where, v, s["minimum"]))
            if "maximum" in s and v > s["maximum"]:
                errs.append("%s: %r > maximum %r" % (where, v, s["maximum"]))
        if isinstance(v, str):
            if "pattern" in s and not re.search(s["pattern"], v):
                errs.append("%s: %r does not match %s" % (where, v, s["pattern"]))
            if s.get("format") == "date-time" and not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", v):
                errs.append("%s: %r is not a date-time" % (where, v))
        if isinstance(v, dict):
            props = s.get("properties", {})
            for r in s.get("required", []):
                if r not in v:
                    errs.append("%s: missing required property '%s'" % (where, r))
            for k, val in v.items():
                if k in props:
                    self._v(props[k], val, "%s.%s" % (where, k), errs)
                else:
                    ap = s.get("additionalProperties", True)
                    if ap is False:
                        errs.append("%s: unexpected property '%s'" % (where, k))
                    elif isinstance(ap, dict):
                        self._v(ap, val, "%s.%s" % (where, k), errs)
        if isinstance(v, list) and "items" in s:
            for i, item in enumerate(v):
                self._v(s["items"], item, "%s[%d]" % (where, i), errs)

    def check_document(self, schema_name, body):
        """Problems with a JSON document (bytes or value) against components/schemas/NAME."""
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError as e:
                return ["%s: not JSON: %s" % (schema_name, e)]
        return ["%s: %s" % (schema_name, e)
                for e in self.validate({"$ref": "#/components/schemas/" + schema_name}, body)]

    # ---- responses ----
    def check_response(self, method, path, status, content_type, body):
        """Problems (list of strings) with one response; empty when it conforms."""
        tmpl, op = self.operation(method, path)
        if tmpl is None:
            # unknown paths must answer with the error envelope
            if status == 404:
                return self._check_body({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                                        content_type, body, "%s %s" % (method, path))
            return ["%s %s: path not in openapi.yaml" % (method, path)]
        where = "%s %s -> %d" % (method, tmpl, status)
        if op is None:
            if status == 405:
                return self._check_body({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                                        content_type, body, where)
            return ["%s: method not in openapi.yaml" % where]
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            return ["%s: status %d not documented (has %s)" % (where, status, ", ".join(sorted(responses)))]
        resp = self.resolve(resp)
        content = resp.get("content")
        if not content:
            if body:
                return ["%s: documented without a body but %d bytes came back" % (where, len(body))]
            return []
        return self._check_body(content, content_type, body, where)

    def _check_body(self, content, content_type, body, where):
        ct = (content_type or "").split(";")[0].strip()
        if ct not in content:
            return ["%s: content type %r not documented (%s)" % (where, ct, ", ".join(content))]
        if ct != "application/json":
            return []
        schema = content[ct].get("schema")
        if schema is None or self.resolve(schema) == {}:
            return []
        try:
            value = json.loads(body)
        except ValueError as e:
            return ["%s: body is not JSON: %s" % (where, e)]
        return ["%s: %s" % (where, e) for e in self.validate(schema, value)]


def refs_resolve(spec):
    """Every $ref in the document points at something. Returns problems."""
    probs = []

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    if spec.resolve({"$ref": node["$ref"]}) is None:
                        probs.append("%s: $ref %s is empty" % (where, node["$ref"]))
                except (KeyError, AssertionError, ValueError):
                    probs.append("%s: $ref %s does not resolve" % (where, node["$ref"]))
            for k, v in node.items():
                walk(v, where + "/" + str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s[%d]" % (where, i))
    walk(spec.doc, "#")
    with open(os.path.join(ROOT, "common", "errors.def")) as f:
        names = set(re.findall(r"^QD_ERR\((\w+)", f.read(), re.M)) - {"OK"}
    enum = set(spec.doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    if names != enum:
        probs.append("Error.code enum differs from common/errors.def: missing %s, extra %s"
                     % (sorted(names - enum), sorted(enum - names)))
    if not str(spec.doc.get("openapi", "")).startswith("3.0"):
        probs.append("openapi version is not 3.0.x")
    for tmpl, item in spec.doc["paths"].items():
        for m, op in item.items():
            if m == "parameters":
                continue
            if not op.get("responses"):
                probs.append("%s %s has no responses" % (m.upper(), tmpl))
    return probs


def strictness(spec):
    """Object schemas (with properties) in components that do not state
    additionalProperties: each must say false, true (free-form on purpose) or give a
    schema, so a field the server adds is either documented or a test failure."""
    probs = []
    seen = set()

    def walk(node, where, part=False):
        if isinstance(node, dict) and "$ref" in node:
            return   # checked where it is defined
        if not isinstance(node, dict) or id(node) in seen:
            return
        seen.add(id(node))
        if "allOf" in node:
            if "additionalProperties" not in spec.merged(node) and spec.merged(node).get("properties"):
                probs.append("%s: allOf object without additionalProperties" % where)
            for i, p in enumerate(node["allOf"]):
                walk(p, "%s/allOf[%d]" % (where, i), part=True)
        elif node.get("properties") and "additionalProperties" not in node and not part:
            probs.append("%s: object schema without additionalProperties (false, true or a schema)" % where)
        for k, v in node.get("properties", {}).items():
            walk(v, "%s.%s" % (where, k))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], "%s/%s" % (where, key))
        for key in ("oneOf", "anyOf"):
            for i, p in enumerate(node.get(key, [])):
                walk(p, "%s/%s[%d]" % (where, key, i))
    for name, sch in spec.doc["components"]["schemas"].items():
        walk(sch, "#/components/schemas/" + name)
    return probs


def self_test(spec):
    """The validator accepts a minimal Metrics document and rejects it with one undocumented
    property at the top, in a nested object and in an array item. Returns problems."""
    doc = {"size": {"float_bytes": 10, "quantized_bytes": 4, "ratio": 0.4}, "quantized_nodes": {"MatMul": 1},
           "quantized_nodes_total": 1, "passes": [], "ignored": [], "seconds": 0.1,
           "accuracy": {"status": "ok", "engine": "quantd", "min_cosine": 0.99,
                        "inputs": {"data_config": "held", "samples": 2, "batches": 2},
                        "outputs": [{"name": "y", "cosine": 0.99, "max_abs_error": 0.1}]}}
    probs = ["valid document refused: %s" % p for p in spec.check_document("Metrics", doc)]
    for label, mutate in (("top level", lambda d: d.__setitem__("bogus", 1)),
                          ("nested", lambda d: d["size"].__setitem__("bogus", 1)),
                          ("array item", lambda d: d["accuracy"]["outputs"][0].__setitem__("bogus", 1))):
        d = json.loads(json.dumps(doc))
        mutate(d)
        if not any("unexpected property 'bogus'" in p for p in spec.check_document("Metrics", d)):
            probs.append("an undocumented property (%s) passes the check" % label)
    return probs


def routes_covered(spec):
    """Every QD_ROUTE row of api/routes.def must be in the spec. Returns problems."""
    probs = []
    with open(os.path.join(ROOT, "api", "routes.def")) as f:
        for line in f:
            m = re.match(r'\s*QD_ROUTE\(\s*(\w+)\s*,\s*"([^"]+)"', line)
            if not m:
                continue
            method, pattern = m.group(1), m.group(2)
            item = spec.doc["paths"].get(pattern)
            if item is None or method.lower() not in item:
                probs.append("route %s %s is not described in openapi.yaml" % (method, pattern))
    return probs


if __name__ == "__main__":
    s = Spec()
    p = routes_covered(s) + refs_resolve(s) + strictness(s) + self_test(s)
    for f in sys.argv[1:]:
        with open(f, "rb") as fh:
            p += ["%s: %s" % (f, e) for e in s.check_document("Footprint" if "footprint" in f else "Metrics", fh.read())]
    for x in p:
        print(x)
    print("openapi: %d passed, %d failed" % (0 if p else 1, len(p)))
    sys.exit(1 if p else 0)
