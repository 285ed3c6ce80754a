#!/usr/bin/env python3
"""Survey tool for the OpenAPI regression corpus (not part of the build).

Needs only python3 (>= 3.11, for tomllib) and PyYAML.

    survey.py report DIR [DIR ...]   human-readable survey of each corpus folder
    survey.py draft  DIR             print a draft expected.toml (no notes/spots)
    survey.py check  DIR [DIR ...]   compare DIR/expected.toml with what this tool
                                      derives; prints every difference
                                      (`survey.py check all` = every corpus folder)
    survey.py fields DIR "GET /path" [a.b]
                                      list the record fields of one GET (or of a
                                      nested field path) with type/format

DIR is a corpus folder such as tests/openapi_corpus/spotify.  The root document
is taken from DIR/expected.toml (`root = ...`) when present, otherwise the only
*.yaml/*.yml/*.json file at the top of DIR.

The heuristics below mirror the definitions used in the expected.toml files:

* get_operations  -- number of (path, "get") pairs under `paths` after
                     resolving path-item and operation-level $refs
                     (`webhooks` are not counted).
* list GET        -- the success response (200, else the lowest 2xx, else 2XX)
                     has a JSON media type (application/json or any *json*
                     type) whose schema is an array of objects (written
                     "GET /p -> []"), or an object with exactly one property
                     that is an array of objects (allOf merged) where
                       (a) it is the object's only property, or
                       (b) every other property is paging/envelope metadata
                           and at least one is a clear paging property
                           (next, total, count, page, links, has_more, ...), or
                       (c) it has a well-known wrapper name (data, items,
                           results, entry, entries, ...) and the others are
                           metadata or include a clear paging property, or
                       (d) it is named like the last literal path segment
                           (GET /x/{id}/events -> `events`) and the object has
                           no `id` property of its own
                     (written "GET /p -> wrapper").
* single GET      -- JSON object response that is not a list.
* other GET       -- anything else (no JSON body, primitive/array-of-primitive
                     body, no 2xx response, ...).
"""
import json
import os
import re
import sys
import urllib.parse

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

WRAPPER_NAMES = {
    "data", "items", "results", "result", "entry", "entries", "records",
    "values", "content", "elements", "objects", "list", "rows", "hits",
}
# properties that may sit next to the list array in a paging envelope
PAGING_META = {
    "next", "previous", "prev", "href", "limit", "offset", "total", "count",
    "total_count", "totalcount", "page", "pages", "page_size", "pagesize",
    "per_page", "has_more", "hasmore", "cursor", "next_cursor", "nextcursor",
    "meta", "links", "_links", "link", "object",
    "next_page", "next_page_url", "previous_page_url", "first_page_url", "url",
    "key", "itemstotal", "pagestotal", "total_results", "results_count",
    "next_marker", "marker", "prev_marker", "order", "start", "end",
    "total_entries", "totalitems", "totalpages", "itemsperpage", "startindex",
    "nextpagetoken", "next_page_token", "continuation", "timestamp", "signature",
    "entries_total", "limit_reached", "has_next_page", "total_hits",
}
META_N = {re.sub(r"[^a-z0-9]", "", m) for m in PAGING_META} | {"type", "resourcetype"}
# properties that on their own show an envelope is a page of results
STRONG_PAGING = {
    "next", "nexturl", "nextpage", "nextpageurl", "nextpagetoken", "nextcursor",
    "nextmarker", "previous", "prev", "prevmarker", "previouspageurl",
    "firstpageurl", "links", "link", "page", "pages", "pagesize", "pagenumber",
    "pagestotal", "itemstotal", "total", "totalcount", "totalresults",
    "totalitems", "totalpages", "count", "hasmore", "cursor", "offset", "limit",
    "marker",
}
PAGING_PARAMS = {
    "after", "before", "starting_after", "ending_before", "cursor", "page",
    "page_size", "pagesize", "per_page", "offset", "limit", "marker",
    "page_token", "pagetoken", "next_page_token", "pagenumber", "page[number]",
    "page[size]", "display_num", "continuation_token", "pagination_token",
    "_count", "usemarker", "pagesize", "max_items", "from", "size",
}


# --------------------------------------------------------------------------
# loading and $ref resolution (multi-file aware)
# --------------------------------------------------------------------------
class Loader:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.files = {}
        self.external_refs = set()
        self.unresolved = set()

    def load(self, path):
        path = os.path.abspath(path)
        if path not in self.files:
            with open(path, "rb") as fh:
                raw = fh.read()
            text = raw.decode("utf-8-sig")
            if path.endswith(".json"):
                data = json.loads(text)
            elif path.endswith((".yaml", ".yml")):
                data = yaml.safe_load(text)
            else:  # e.g. $ref to a markdown description or a code sample
                data = text
            self.files[path] = data
        return self.files[path]

    def pointer(self, doc, frag):
        if not frag or frag == "/":
            return doc
        cur = doc
        for tok in frag.lstrip("/").split("/"):
            tok = urllib.parse.unquote(tok).replace("~1", "/").replace("~0", "~")
            if isinstance(cur, list):
                cur = cur[int(tok)]
            else:
                cur = cur[tok]
        return cur

    def deref(self, node, file, seen=None):
        """Follow $ref chains; returns (node, file_the_node_lives_in)."""
        seen = seen or set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            key = (file, ref)
            if key in seen:
                raise ValueError("ref cycle at %s in %s" % (ref, file))
            seen.add(key)
            target, _, frag = ref.partition("#")
            if target:
                if "://" in target:
                    raise ValueError("remote ref %s" % ref)
                tfile = os.path.normpath(os.path.join(os.path.dirname(file), target))
                self.external_refs.add(os.path.relpath(tfile, os.path.dirname(self.root)))
            else:
                tfile = file
            node = self.pointer(self.load(tfile), frag)
            file = tfile
        return node, file


# --------------------------------------------------------------------------
# schema flattening
# --------------------------------------------------------------------------
def primary_type(t):
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        return non_null[0] if non_null else "null"
    return t


class Flat:
    """A schema with allOf merged; properties kept as (schema, file) pairs."""

    def __init__(self):
        self.type = None
        self.types = None  # raw 3.1 list, if any
        self.format = None
        self.nullable = False
        self.properties = {}
        self.items = None
        self.one_of = []  # list of (schema, file) variants (oneOf/anyOf)
        self.used_all_of = False
        self.used_one_of = None  # "oneOf" / "anyOf"
        self.const_int_enum = False
        self.has_additional = False
        self.unresolved = False


def flatten(L, schema, file, depth=0):
    f = Flat()
    if depth > 12:
        return f
    try:
        schema, file = L.deref(schema, file)
    except (KeyError, IndexError, ValueError, OSError) as e:
        # dangling / remote / cyclic $ref: report it, treat the schema as unknown
        L.unresolved.add("%s (%s)" % (schema.get("$ref"), type(e).__name__))
        f.unresolved = True
        return f
    if not isinstance(schema, dict):
        return f
    t = schema.get("type")
    if isinstance(t, list):
        f.types = t
        f.nullable = "null" in t
    f.type = primary_type(t)
    f.format = schema.get("format")
    if schema.get("nullable") is True:
        f.nullable = True
    for name, ps in (schema.get("properties") or {}).items():
        f.properties[name] = (ps, file)
    if "items" in schema and isinstance(schema["items"], (dict,)):
        f.items = (schema["items"], file)
    if schema.get("additionalProperties") not in (None, False):
        f.has_additional = True
    for sub in schema.get("allOf") or []:
        f.used_all_of = True
        sf = flatten(L, sub, file, depth + 1)
        f.type = f.type or sf.type
        f.format = f.format or sf.format
        f.nullable = f.nullable or sf.nullable
        for k, v in sf.properties.items():
            f.properties.setdefault(k, v)
        f.items = f.items or sf.items
        f.one_of = f.one_of or sf.one_of
        f.used_one_of = f.used_one_of or sf.used_one_of
        f.const_int_enum = f.const_int_enum or sf.const_int_enum
    for kw in ("oneOf", "anyOf"):
        variants = schema.get(kw) or []
        if not variants:
            continue
        non_null = []
        for v in variants:
            vs, vf = L.deref(v, file)
            if isinstance(vs, dict) and (vs.get("type") == "null" or vs == {"nullable": True}):
                f.nullable = True
                continue
            non_null.append((v, file))
        consts = [L.deref(v, fl)[0] for v, fl in non_null]
        if consts and all(isinstance(c, dict) and "const" in c for c in consts):
            if all(isinstance(c["const"], int) and not isinstance(c["const"], bool) for c in consts):
                f.const_int_enum = True
                f.type = f.type or "integer"
            elif all(isinstance(c["const"], str) for c in consts):
                f.type = f.type or "string"
            continue
        if len(non_null) == 1:
            sf = flatten(L, non_null[0][0], non_null[0][1], depth + 1)
            f.type = f.type or sf.type
            f.format = f.format or sf.format
            for k, v in sf.properties.items():
                f.properties.setdefault(k, v)
            f.items = f.items or sf.items
            f.const_int_enum = f.const_int_enum or sf.const_int_enum
            continue
        f.used_one_of = kw
        f.one_of = non_null
        # union of variant properties, so record fields can still be listed
        types = set()
        for v, fl in non_null:
            sf = flatten(L, v, fl, depth + 1)
            types.add(sf.type or ("object" if sf.properties else None))
            for k, vv in sf.properties.items():
                f.properties.setdefault(k, vv)
        if not f.type and len(types) == 1:
            f.type = types.pop()
    if not f.type:
        if f.properties:
            f.type = "object"
        elif f.items:
            f.type = "array"
    return f


def is_objectish(L, schema, file):
    fl = flatten(L, schema, file)
    return fl.type == "object" or bool(fl.properties) or (
        fl.used_one_of is not None and fl.type in (None, "object"))


# --------------------------------------------------------------------------
# operation survey
# --------------------------------------------------------------------------
def json_media(content):
    if not isinstance(content, dict):
        return None
    keys = list(content)
    for k in keys:
        if k.split(";")[0].strip() == "application/json":
            return k
    for k in keys:
        if "json" in k.lower():
            return k
    return None


def pick_success(responses):
    if not isinstance(responses, dict):
        return None
    codes = [str(c) for c in responses]
    if "200" in codes:
        return "200"
    twos = sorted(c for c in codes if re.fullmatch(r"2\d\d", c))
    if twos:
        return twos[0]
    if "2XX" in codes or "2xx" in codes:
        return "2XX" if "2XX" in codes else "2xx"
    return None


def norm(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def collect_params(L, item, ifile, op, ofile):
    params = {}
    for src, fl in ((item.get("parameters") or [], ifile), (op.get("parameters") or [], ofile)):
        for p in src:
            ps, pf = L.deref(p, fl)
            if isinstance(ps, dict) and "name" in ps:
                params[(ps.get("in"), ps["name"])] = (ps, pf)
    return params


def survey(root):
    L = Loader(root)
    doc = L.load(root)
    rootf = os.path.abspath(root)
    out = {"openapi": str(doc.get("openapi")), "gets": [], "operation_ids": {}}
    for path, item in (doc.get("paths") or {}).items():
        item, ifile = L.deref(item, rootf)
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            if method not in item:
                continue
            op, ofile = L.deref(item[method], ifile)
            oid = op.get("operationId")
            if oid:
                out["operation_ids"].setdefault(oid, []).append("%s %s" % (method.upper(), path))
            if method != "get":
                continue
            out["gets"].append(survey_get(L, path, item, ifile, op, ofile))
    return L, doc, out


def survey_get(L, path, item, ifile, op, ofile):
    g = {"op": "GET " + path, "kind": "other", "wrapper": None, "fields": {},
         "hints": [], "media": None, "status": None}
    params = collect_params(L, item, ifile, op, ofile)
    g["path_params"] = [n for (i, n) in params if i == "path"]
    g["query_params"] = [n for (i, n) in params if i == "query"]
    g["required_headers"] = [n for (i, n), (ps, _) in params.items()
                             if i == "header" and ps.get("required") and n.lower() != "authorization"]
    paging_q = [n for n in g["query_params"] if n.lower() in PAGING_PARAMS]
    if paging_q:
        g["hints"].append("paging query params: " + ", ".join(paging_q))
    responses = op.get("responses")
    code = pick_success(responses)
    if code is None:
        g["hints"].append("no 2xx response")
        return g
    g["status"] = code
    resp, rfile = L.deref(responses[code] if code in responses else responses[int(code)], ofile)
    hdrs = [h for h in (resp.get("headers") or {}) if norm(h) in
            ("link", "xnextpage", "xpagetoken", "xnextpagetoken", "nextrange", "xtotalcount",
             "xcontinuation", "xnextcursor", "xcursor", "continuationtoken", "xmspagingtoken")]
    if hdrs:
        g["hints"].append("paging response headers: " + ", ".join(hdrs))
    content = resp.get("content")
    mt = json_media(content)
    if not mt:
        g["media"] = list(content) if isinstance(content, dict) else None
        return g
    g["media"] = mt
    mobj = content[mt] or {}
    if "schema" not in mobj:
        g["hints"].append("json media type without schema")
        return g
    top = flatten(L, mobj["schema"], rfile)
    record = None
    if top.used_all_of:
        g["hints"].append("response schema uses allOf")
    if top.type == "array" or (top.items and not top.properties):
        if top.items and is_objectish(L, *top.items):
            g["kind"], g["wrapper"], record = "list", None, top.items
        else:
            g["hints"].append("array of non-objects")
            return g
    elif top.type == "object" or top.properties:
        arr = []
        for name, (ps, pf) in top.properties.items():
            pflat = flatten(L, ps, pf)
            if (pflat.type == "array" or pflat.items) and pflat.items and is_objectish(L, *pflat.items):
                arr.append((name, pflat))
        if len(arr) == 1:
            name, pflat = arr[0]
            others = [k for k in top.properties if k != name]
            last = norm(derived_name(g["op"]))
            meta_only = all(norm(k) in META_N for k in others)
            strong = any(norm(k) in STRONG_PAGING for k in others)
            rule = None
            if not others:
                rule = "a"
            elif meta_only and strong:
                rule = "b"
            elif name.lower() in WRAPPER_NAMES and (meta_only or strong):
                rule = "c"
            elif norm(name) == last and "id" not in others:
                rule = "d"
            if rule:
                g["kind"], g["wrapper"], record = "list", name, pflat.items
                g["rule"] = rule
                if rule in ("c", "d"):
                    g["hints"].append("wrapper rule (%s); other properties: %s" % (rule, ", ".join(others)))
                if pflat.used_all_of:
                    g["hints"].append("wrapper array uses allOf")
            else:
                g["kind"] = "single"
                g["hints"].append("object with one embedded array-of-objects '%s' (others: %s)"
                                  % (name, ", ".join(others)))
        else:
            g["kind"] = "single"
            if len(arr) > 1:
                g["hints"].append("object with several arrays of objects: " + ", ".join(a for a, _ in arr))
        if top.used_one_of:
            g["hints"].append("response schema is %s" % top.used_one_of)
        meta = [k for k in top.properties if norm(k) in
                ("next", "nextpageurl", "hasmore", "cursor", "nextcursor", "pages", "links", "links",
                 "meta", "nextpage", "nextpagetoken", "paging", "page")]
        if meta and g["kind"] == "list":
            g["hints"].append("paging/meta properties: " + ", ".join(meta))
    else:
        g["hints"].append("primitive JSON body (type=%s)" % top.type)
        return g
    g["record"] = record if record is not None else (mobj["schema"], rfile)
    if record is not None:
        rflat = flatten(L, *record)
        if rflat.used_one_of:
            g["hints"].append("list items are %s (%d variants)" % (rflat.used_one_of, len(rflat.one_of)))
        if rflat.used_all_of:
            g["hints"].append("list items use allOf")
        for fname, (fs, ff) in rflat.properties.items():
            ffl = flatten(L, fs, ff)
            g["fields"][fname] = {"type": ffl.type, "format": ffl.format, "nullable": ffl.nullable,
                                  "const_int_enum": ffl.const_int_enum}
        clashes = [p for p in g["path_params"] for fname in g["fields"] if norm(p) == norm(fname)]
        if clashes:
            g["hints"].append("path param / record field name clash: " + ", ".join(sorted(set(clashes))))
        cie = [k for k, v in g["fields"].items() if v["const_int_enum"]]
        if cie:
            g["hints"].append("integer enums via oneOf const: " + ", ".join(cie))
    else:
        for fname, (fs, ff) in top.properties.items():
            ffl = flatten(L, fs, ff)
            g["fields"][fname] = {"type": ffl.type, "format": ffl.format, "nullable": ffl.nullable,
                                  "const_int_enum": ffl.const_int_enum}
    if g["required_headers"]:
        g["hints"].append("required non-auth headers: " + ", ".join(g["required_headers"]))
    return g


def lookup_field(L, record, dotted):
    """Resolve a dotted field path (a.b.c) inside a record schema; arrays are
    stepped through transparently.  Returns a Flat or None."""
    cur = record
    fl = None
    for part in dotted.split("."):
        fl = flatten(L, *cur)
        while (fl.type == "array" or (fl.items and not fl.properties)) and fl.items:
            fl = flatten(L, *fl.items)
        if part not in fl.properties:
            return None
        cur = fl.properties[part]
        fl = flatten(L, *cur)
    return fl


def derived_name(op):
    segs = [s for s in op.split(" ", 1)[1].strip("/").split("/") if s and not s.startswith("{")]
    return segs[-1].lower() if segs else "root"


def find_root(d):
    exp = os.path.join(d, "expected.toml")
    if os.path.exists(exp):
        import tomllib
        with open(exp, "rb") as fh:
            return os.path.join(d, tomllib.load(fh)["root"])
    cands = [f for f in os.listdir(d) if f.endswith((".yaml", ".yml", ".json")) and f != "expected.toml"]
    if len(cands) != 1:
        raise SystemExit("cannot guess root in %s: %s" % (d, cands))
    return os.path.join(d, cands[0])


def fmt_list(g):
    return "%s -> %s" % (g["op"], g["wrapper"] if g["wrapper"] else "[]")


def report(d):
    root = find_root(d)
    L, doc, out = survey(root)
    gets = out["gets"]
    print("=" * 78)
    print(d, "root:", os.path.relpath(root, d), "openapi", out["openapi"])
    print("GET operations:", len(gets), " list:", sum(g["kind"] == "list" for g in gets),
          " single:", sum(g["kind"] == "single" for g in gets),
          " other:", sum(g["kind"] == "other" for g in gets))
    print("files referenced via external $ref:", len(L.external_refs))
    if L.unresolved:
        print("UNRESOLVED $refs met while surveying:", ", ".join(sorted(L.unresolved)))
    for g in gets:
        label = fmt_list(g) if g["kind"] == "list" else g["op"]
        print("  [%s] %s  (%s %s)" % (g["kind"], label, g["status"], g["media"]))
        for h in g["hints"]:
            print("        - " + h)
        if g["kind"] == "list":
            fields = ", ".join("%s:%s%s" % (k, v["type"], ("/" + v["format"]) if v["format"] else "")
                               for k, v in g["fields"].items())
            print("        fields: " + fields[:600])
    names = {}
    for g in gets:
        if g["kind"] == "list":
            names.setdefault(derived_name(g["op"]), []).append(g["op"])
    dup = {k: v for k, v in names.items() if len(v) > 1}
    if dup:
        print("  duplicate last-segment names among list GETs:")
        for k, v in sorted(dup.items()):
            print("     %s: %s" % (k, "; ".join(v)))
    dup_ids = {k: v for k, v in out["operation_ids"].items() if len(v) > 1}
    if dup_ids:
        print("  duplicate operationIds:", dup_ids)
    missing_ids = [g["op"] for g in gets if g["op"] not in
                   {o for v in out["operation_ids"].values() for o in v}]
    if missing_ids:
        print("  GETs without operationId:", len(missing_ids))
    return L, out


def draft(d):
    root = find_root(d)
    L, doc, out = survey(root)
    gets = out["gets"]
    q = json.dumps
    print("root = %s" % q(os.path.relpath(root, d)))
    print("openapi = %s" % q(out["openapi"]))
    print("get_operations = %d" % len(gets))
    print("list_gets = [")
    for g in gets:
        if g["kind"] == "list":
            print("  %s," % q(fmt_list(g)))
    print("]")
    print("single_object_gets = [")
    for g in gets:
        if g["kind"] == "single":
            print("  %s," % q(g["op"]))
    print("]")
    print("other_gets = [")
    for g in gets:
        if g["kind"] == "other":
            print("  %s," % q(g["op"]))
    print("]")


def check(d):
    import tomllib
    with open(os.path.join(d, "expected.toml"), "rb") as fh:
        exp = tomllib.load(fh)
    L, doc, out = survey(os.path.join(d, exp["root"]))
    gets = {g["op"]: g for g in out["gets"]}
    problems = []
    if exp.get("openapi") != out["openapi"]:
        problems.append("openapi %r != %r" % (exp.get("openapi"), out["openapi"]))
    if exp.get("get_operations") != len(gets):
        problems.append("get_operations %r != %d" % (exp.get("get_operations"), len(gets)))
    derived_lists = {fmt_list(g) for g in gets.values() if g["kind"] == "list"}
    for x in sorted(set(exp.get("list_gets", [])) - derived_lists):
        problems.append("expected list not derived: " + x)
    for x in sorted(derived_lists - set(exp.get("list_gets", []))):
        problems.append("derived list not expected: " + x)
    derived_single = {g["op"] for g in gets.values() if g["kind"] == "single"}
    for x in sorted(set(exp.get("single_object_gets", [])) - derived_single):
        problems.append("expected single not derived: " + x)
    for x in sorted(derived_single - set(exp.get("single_object_gets", []))):
        problems.append("derived single not expected: " + x)
    if "other_gets" in exp:
        derived_other = {g["op"] for g in gets.values() if g["kind"] == "other"}
        for x in sorted(set(exp["other_gets"]) ^ derived_other):
            problems.append("other_gets mismatch: " + x)
    for s in exp.get("spot", []):
        g = gets.get(s["operation"])
        if g is None:
            problems.append("spot op missing: " + s["operation"])
            continue
        fl = lookup_field(L, g["record"], s["field"]) if g.get("record") else None
        if fl is None:
            problems.append("spot field missing: %s %s" % (s["operation"], s["field"]))
            continue
        if fl.type != s["json_type"]:
            problems.append("spot type %s %s: %r != %r" % (s["operation"], s["field"], s["json_type"], fl.type))
        if s.get("format") != fl.format:
            problems.append("spot format %s %s: %r != %r" % (s["operation"], s["field"], s.get("format"), fl.format))
        if "nullable" in s and bool(s["nullable"]) != fl.nullable:
            problems.append("spot nullable %s %s: %r != %r" % (s["operation"], s["field"], s["nullable"], fl.nullable))
    print("%s: %s" % (d, "OK" if not problems else "%d difference(s)" % len(problems)))
    for p in problems:
        print("   " + p)
    return not problems


def fields(d, op, prefix=""):
    """print the record fields (type/format) of one GET operation, e.g.
    survey.py fields DIR "GET /v1/payments" [dotted.prefix]"""
    L, doc, out = survey(find_root(d))
    g = {x["op"]: x for x in out["gets"]}[op]
    rec = g["record"]
    fl = lookup_field(L, rec, prefix) if prefix else flatten(L, *rec)
    while fl is not None and (fl.type == "array" or (fl.items and not fl.properties)) and fl.items:
        fl = flatten(L, *fl.items)
    print("%s [%s] wrapper=%s" % (op, g["kind"], g["wrapper"]))
    for k, (fs, ff) in (fl.properties.items() if fl else []):
        x = flatten(L, fs, ff)
        print("   %-40s %-8s %-12s%s%s" % ((prefix + "." if prefix else "") + k, x.type, x.format or "",
                                         " nullable" if x.nullable else "",
                                         " oneOf-const-int" if x.const_int_enum else ""))


def main(argv):
    if len(argv) >= 4 and argv[1] == "fields":
        fields(argv[2].rstrip("/"), argv[3], argv[4] if len(argv) > 4 else "")
        return 0
    if len(argv) < 3 or argv[1] not in ("report", "draft", "check"):
        print(__doc__)
        return 2
    ok = True
    dirs = argv[2:]
    if dirs == ["all"]:  # every corpus folder next to tools/
        base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        dirs = sorted(os.path.join(base, x) for x in os.listdir(base)
                      if os.path.isfile(os.path.join(base, x, "expected.toml")))
    for d in dirs:
        d = d.rstrip("/")
        if argv[1] == "check" and not os.path.isfile(os.path.join(d, "expected.toml")):
            print("%s: skipped (no expected.toml)" % d)
            continue
        if argv[1] == "report":
            report(d)
        elif argv[1] == "draft":
            draft(d)
        else:
            ok = check(d) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
