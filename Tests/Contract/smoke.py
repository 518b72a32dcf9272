#!/usr/bin/env python3
"""smoke.py BASE_URL SPEC_FILE: exact checks of the contract that schemathesis cannot generate.

Run by run-contract.sh against the live daemon, over the images of make-demo-images.sh and
make-malformed-images.py: raw bytes in bitmap names (%2F, %FF), 304 with If-None-Match, HEAD
without a body, 405 with Allow, the Link walk of the listing, exact u64 values above 2^53, and
the served spec being the file in the repository. Standard library only. Exit 1 on any failure.
"""
import http.client
import json
import sys
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
spec_file = sys.argv[2]
failures = 0
checks = 0
xfails = 0

# Checks of documented behaviour that the daemon does not meet yet, by id. Such a check prints
# XFAIL and does not fail the run; once it passes it prints XPASS and fails the run, so that the
# id is removed from here and the check guards the fix from then on.
KNOWN_BUGS: set[str] = set()  # bug ids whose checks are expected to fail until fixed


def request(method, target, headers=None):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    conn.request(method, target, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def check(name, ok, detail="", bug=None):
    global failures, checks, xfails
    checks += 1
    if bug in KNOWN_BUGS:
        if ok:
            failures += 1
            print(f"  XPASS {name}: fixed, remove '{bug}' from KNOWN_BUGS in smoke.py")
        else:
            xfails += 1
            print(f"  XFAIL {name} (known bug '{bug}'): {detail}")
    elif ok:
        print(f"  ok    {name}")
    else:
        failures += 1
        print(f"  FAIL  {name}: {detail}")


def walk(target):
    """Follows Link rel=next from target; returns (documents, statuses of every page)."""
    docs, statuses = [], []
    for _ in range(1000):
        s, h, b = request("GET", target)
        statuses.append(s)
        if s != 200:
            break
        docs.append(json.loads(b))
        link = h.get("link")
        if link is None:
            break
        target = link.split(">")[0].lstrip("<")
    return docs, statuses


# The served spec is the repository's file, byte for byte.
status, h, body = request("GET", "/v1/openapi.yaml")
with open(spec_file, "rb") as f:
    on_disk = f.read()
check("GET /v1/openapi.yaml serves api/openapi.yaml", status == 200 and body == on_disk,
      f"status {status}, {len(body)} bytes served vs {len(on_disk)} on disk (rebuild qcowscoped?)")
check("/v1/openapi.yaml is application/yaml", h.get("content-type", "").startswith("application/yaml"),
      h.get("content-type"))

# A bitmap name with '/' is one path component: %2F.
status, h, body = request("GET", "/v1/images/bitmap-names.qcow2/bitmaps/b%2Fenabled")
doc = json.loads(body) if status == 200 else {}
check("bitmap 'b/enabled' via %2F", status == 200 and doc.get("name") == "b/enabled", f"{status} {body[:200]!r}")
status, h, body = request("GET", "/v1/images/bitmap-names.qcow2/bitmaps/b%2Fenabled/table?limit=1")
check("table of 'b/enabled' via %2F", status == 200 and json.loads(body).get("bitmap") == "b/enabled",
      f"{status} {body[:200]!r}")

# A bitmap name that is not UTF-8: %FF, shown as \xff with name_hex.
status, h, body = request("GET", "/v1/images/bitmap-names.qcow2/bitmaps/b%FFdisabled")
doc = json.loads(body) if status == 200 else {}
check("bitmap b\\xffdisabled via %FF", status == 200 and doc.get("name") == "b\\xffdisabled"
      and doc.get("name_hex") == "62ff64697361626c6564", f"{status} {body[:200]!r}")

# 304: If-None-Match with the current ETag (also weak and in a list), no body.
status, h, body = request("GET", "/v1/images/bitmaps.qcow2/bitmaps?limit=1")
etag = h.get("etag")
check("per-image documents carry an ETag", status == 200 and etag is not None, f"{status} {h}")
for inm in (etag, "W/" + str(etag), '"0000000000000000", ' + str(etag), "*"):
    s2, h2, b2 = request("GET", "/v1/images/bitmaps.qcow2/bitmaps?limit=1", {"If-None-Match": inm})
    check(f"If-None-Match: {inm} -> 304 without body", s2 == 304 and b2 == b"" and h2.get("etag") == etag,
          f"{s2} {b2[:100]!r}")
s2, _, _ = request("GET", "/v1/images/bitmaps.qcow2/bitmaps?limit=2", {"If-None-Match": etag})
check("another page has another ETag (200)", s2 == 200, str(s2))
s2, _, _ = request("GET", "/v1/images/bitmaps.qcow2/bitmaps?limit=0", {"If-None-Match": "*"})
check("a bad query is 400, never 304", s2 == 400, str(s2))

# HEAD: GET's status and headers, no body.
for target in ("/healthz", "/v1/images?limit=2", "/v1/images/bitmaps.qcow2", "/v1/images/nope.qcow2",
               "/v1/images/bitmaps.qcow2/bitmaps/b-enabled/extents?limit=1"):
    sg, hg, bg = request("GET", target)
    sh, hh, bh = request("HEAD", target)
    same = all(hg.get(k) == hh.get(k) for k in ("content-type", "etag", "link", "cache-control"))
    check(f"HEAD {target} = GET without body", sg == sh and same and bh == b"", f"GET {sg} {hg} / HEAD {sh} {hh} {bh[:50]!r}")

# 405 with Allow for every other method, on existing and missing resources.
for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
    for target in ("/v1/images", "/v1/images/plain.qcow2/header", "/v1/images/nope.qcow2"):
        s, h, b = request(method, target)
        ok = s == 405 and h.get("allow") == "GET, HEAD" and h.get("content-type") == "application/problem+json"
        check(f"{method} {target} -> 405 Allow: GET, HEAD", ok, f"{s} {h}")

# The listing walked with Link headers sees every image once; Link and `next` agree.
s, h, b = request("GET", "/v1/images?limit=1000")
everything = [i["name"] for i in json.loads(b)["images"]]
cafe = {"caf\u00e9.qcow2", "cafe\u0301.qcow2"}
docs, statuses = walk("/v1/images?limit=2")
seen = [i["name"] for d in docs for i in d["images"]]
check("Link walk of /v1/images?limit=2 = the whole listing",
      set(statuses) == {200} and [n for n in seen if n not in cafe] == [n for n in everything if n not in cafe]
      and len(everything) > 10, f"{statuses} {seen} vs {everything}")
check("`next` is null exactly on the last page",
      all(d["next"] is not None for d in docs[:-1]) and docs and docs[-1]["next"] is None, str([d["next"] for d in docs]))
check("the listing skips non-qcow2, FIFO, directory, link outside, non-UTF-8 name; lists damaged .qcow2 files",
      not {"notes.txt", "fifo.qcow2", "subdir.qcow2", "outside.qcow2"} & set(everything)
      and {"inside.qcow2", "uni c\u00f8de+%.qcow2", "empty.qcow2"} <= set(everything), str(everything))
docs, statuses = walk("/v1/images?limit=1")
seen = [i["name"] for d in docs for i in d["images"]]
check("Link walk with limit=1 sees both NFC and NFD spellings of caf\u00e9.qcow2", seen == everything,
      f"missing {sorted(set(everything) - set(seen))}", bug="images-cursor-canonical")

# Extents walked with Link headers: every page 200, pages contiguous, the whole range covered.
for image, bitmap in (("bitmaps.qcow2", "b-enabled"), ("bitmap-names.qcow2", "b%2Fenabled"),
                      ("zerobm.qcow2", "b-enabled"), ("hugebm.qcow2", "b-enabled")):
    docs, statuses = walk(f"/v1/images/{image}/bitmaps/{bitmap}/extents?limit=1")
    runs = [e for d in docs for e in d["extents"]]
    contiguous = all(a["start"] + a["length"] == b["start"] and a["dirty"] != b["dirty"] for a, b in zip(runs, runs[1:]))
    covered = bool(docs) and sum(e["length"] for e in runs) == docs[0]["length"]
    check(f"extents Link walk of {image}/{bitmap}: all pages 200, contiguous, whole range",
          set(statuses) == {200} and contiguous and covered, f"statuses {statuses[-3:]}, {len(runs)} runs",
          bug="extents-link-huge" if image == "hugebm.qcow2" else None)
s, h, b = request("GET", "/v1/images/bitmaps.qcow2/bitmaps/b-enabled/extents?cursor=5-x")
check("a malformed extents cursor (5-x) is 400", s == 400, f"{s} {b[:160]!r}", bug="extents-cursor-malformed")

# u64 above 2^53 printed exactly.
s, h, b = request("GET", "/v1/images/huge.qcow2/header")
check("u64 2^64-1 exact in the JSON text", s == 200 and b'"size":18446744073709551615' in b, f"{s} {b[:200]!r}")

# Traversal and impossible names: 404 problem, nothing from outside.
for target in ("/v1/images/..%2F..%2Fetc%2Fpasswd", "/v1/images/%2e%2e", "/v1/images/outside.qcow2",
               "/v1/images/fifo.qcow2", "/v1/images/subdir.qcow2", "/v1/images/%FF.qcow2", "/v1/images/plain.qcow2%00"):
    s, h, b = request("GET", target)
    check(f"GET {target} -> 404", s == 404 and b"root:" not in b and h.get("content-type") == "application/problem+json",
          f"{s} {b[:200]!r}")

# Unreadable images: 422 with the parser's error.
for name, kind in (("short.qcow2", "truncated"), ("badversion.qcow2", "unsupported_version"), ("empty.qcow2", None)):
    s, h, b = request("GET", f"/v1/images/{name}/header")
    doc = json.loads(b) if b else {}
    ok = s == 422 and doc.get("type") == "urn:qcowscope:problem:unreadable-image" and (kind is None or doc["error"]["kind"] == kind)
    check(f"GET /v1/images/{name}/header -> 422 {kind or ''}", ok, f"{s} {b[:200]!r}")

print(f"smoke: {checks} checks, {checks - failures - xfails} passed, {xfails} known bugs (XFAIL), {failures} failed")
sys.exit(1 if failures else 0)
