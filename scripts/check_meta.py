#!/usr/bin/python3
"""Checks the release metadata against the Makefile's EXTVERSION (the one version source).

META.json (PGXN meta-spec 1.0.0): valid JSON, every required key (and the ones this project
promises: description, prereqs, resources, tags), license "postgresql" with a LICENSE file, the
distribution's and every provided extension's version equal to EXTVERSION, the provided file
named after it. debian/changelog: its newest entry is EXTVERSION with a Debian revision.

    /usr/bin/python3 scripts/check_meta.py              check the tree (ctest runs it: unit layer)
    /usr/bin/python3 scripts/check_meta.py --self-test  check that broken metadata is rejected
Exits 1 and names every problem found.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# meta-spec 1.0.0 "Required Fields", then what this project adds.
REQUIRED = ["name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"]
PROMISED = ["description", "prereqs", "resources", "tags"]
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def extversion(makefile):
    m = re.search(r"^EXTVERSION\s*[:?]?=\s*(\S+)\s*$", makefile, re.M)
    if not m:
        raise SystemExit("check_meta: no EXTVERSION in the Makefile")
    return m.group(1)


def problems(meta_text, version, changelog, exists):
    """What is wrong with META.json (text) and debian/changelog (text) for EXTVERSION version."""
    found = []
    try:
        meta = json.loads(meta_text)
    except ValueError as e:
        return ["META.json is not valid JSON: %s" % e]
    if not isinstance(meta, dict):
        return ["META.json is not a JSON object"]
    for key in REQUIRED + PROMISED:
        if key not in meta:
            found.append("META.json misses the key %r" % key)
    if meta.get("name") != "pg_sync":
        found.append("META.json name is %r, not 'pg_sync'" % meta.get("name"))
    if meta.get("version") != version:
        found.append("META.json version %r differs from EXTVERSION %s" % (meta.get("version"), version))
    if not SEMVER.match(version):
        found.append("EXTVERSION %s is not a semantic version x.y.z (PGXN requires one)" % version)
    spec = meta.get("meta-spec")
    if not isinstance(spec, dict) or spec.get("version") != "1.0.0":
        found.append("META.json meta-spec.version is not 1.0.0")
    if meta.get("license") != "postgresql":
        found.append("META.json license is %r, not 'postgresql'" % meta.get("license"))
    if not exists("LICENSE"):
        found.append("no LICENSE file")
    provides = meta.get("provides")
    if not isinstance(provides, dict) or "pg_sync" not in provides:
        found.append("META.json provides no 'pg_sync'")
    else:
        for name, ext in provides.items():
            if not isinstance(ext, dict):
                found.append("META.json provides.%s is not an object" % name)
                continue
            for key in ("file", "docfile", "version"):
                if key not in ext:
                    found.append("META.json provides.%s misses %r" % (name, key))
            if "version" in ext and ext["version"] != version:
                found.append("META.json provides.%s.version %r differs from EXTVERSION %s"
                             % (name, ext["version"], version))
            # The install script make generates for EXTVERSION (a build output, see the Makefile).
            if "file" in ext and ext["file"] != "sql/%s--%s.sql" % (name, version):
                found.append("META.json provides.%s.file %r is not sql/%s--%s.sql"
                             % (name, ext["file"], name, version))
            if "docfile" in ext and not exists(ext["docfile"]):
                found.append("META.json provides.%s.docfile %r does not exist" % (name, ext["docfile"]))
    requires = ((meta.get("prereqs") or {}).get("runtime") or {}).get("requires") or {}
    if "15" not in str(requires.get("PostgreSQL", "")):
        found.append("META.json prereqs.runtime.requires.PostgreSQL does not name 15")
    if changelog is not None:
        m = re.match(r"^pg-sync \(([^)]+)\)", changelog)
        if not m:
            found.append("debian/changelog does not start with a pg-sync entry")
        elif not m.group(1).startswith(version + "-"):
            found.append("debian/changelog version %s is not EXTVERSION %s with a Debian revision"
                         % (m.group(1), version))
    return found


def self_test(meta_text, version, changelog, exists):
    """Every kind of breakage must be reported; the real files must pass."""
    meta = json.loads(meta_text)
    broken = {"invalid JSON": meta_text[:-2]}
    for key in REQUIRED + PROMISED:
        m = dict(meta)
        del m[key]
        broken["no %s" % key] = json.dumps(m)
    broken["version differs"] = json.dumps(dict(meta, version="9.9.9"))
    ext = dict(meta["provides"]["pg_sync"], version="9.9.9")
    broken["provides version differs"] = json.dumps(dict(meta, provides={"pg_sync": ext}))
    ext = {k: v for k, v in meta["provides"]["pg_sync"].items() if k != "docfile"}
    broken["provides without docfile"] = json.dumps(dict(meta, provides={"pg_sync": ext}))
    failed = [what for what, text in broken.items() if not problems(text, version, changelog, exists)]
    if not problems(meta_text, version, changelog.replace(version + "-", "9.9.9-", 1), exists):
        failed.append("debian/changelog version differs")
    if problems(meta_text, version, changelog, exists):
        failed.append("the real files")
    for what in failed:
        print("check_meta self-test: not detected: %s" % what)
    return not failed


def main():
    version = extversion(read("Makefile"))
    meta_text = read("META.json")
    changelog = read("debian/changelog")
    exists = lambda p: os.path.isfile(os.path.join(ROOT, p))
    if sys.argv[1:] == ["--self-test"]:
        ok = self_test(meta_text, version, changelog, exists)
        print("check_meta self-test: %s" % ("every breakage detected" if ok else "FAILED"))
        return 0 if ok else 1
    found = problems(meta_text, version, changelog, exists)
    for p in found:
        print("check_meta: %s" % p)
    if not found:
        print("check_meta: META.json and debian/changelog match EXTVERSION %s" % version)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
