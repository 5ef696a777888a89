#!/usr/bin/env bash
# Rebuilds the checked-in seed corpora, fuzz/corpus/<target>/, from the test fixtures
# (tests/fixtures/*.json, Meta's webhook bodies) and the keyword policy's test table
# (shared/src/optout/keywords/tests.rs). Small on purpose: a few dozen files per target; what a
# long run discovers stays in fuzz/target/corpus/ (infra/fuzz.sh), unversioned.
#   webhook_verify_split  each body, raw and with its X-Hub-Signature-256 (`H:<header>\n<body>`)
#   processor_parse       each body split into the envelopes the webhook enqueues
#   keyword_classify      every text of the fixtures and of the keyword table, a few with tenant keywords
#   cursor_decode         store cursors for the fuzz target's listings, and hostile tokens
# Needs python3 only. Seed file names are content hashes, as libFuzzer names its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python3 - "$ROOT" <<'PY'
import base64, hashlib, hmac, json, os, re, shutil, sys

root = sys.argv[1]
fixtures = os.path.join(root, "tests", "fixtures")
corpus = os.path.join(root, "fuzz", "corpus")
# Must match fuzz_targets/webhook_verify_split.rs and the split's request id and receipt time.
APP_SECRET = b"fuzz-app-secret"
RECEIVED_AT = "2027-01-15T08:00:00Z"  # Timestamp::from_unix_seconds(1_800_000_000)

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

for target in ["webhook_verify_split", "processor_parse", "keyword_classify", "cursor_decode"]:
    shutil.rmtree(os.path.join(corpus, target), ignore_errors=True)

bodies = []
for name in sorted(os.listdir(fixtures)):
    if name.endswith(".json"):
        with open(os.path.join(fixtures, name), "rb") as f:
            bodies.append(f.read())

def compact(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

def envelopes(body):
    """What shared::meta::envelope::split enqueues for a well-formed body."""
    doc = json.loads(body)
    obj = doc["object"]
    channel = "whatsapp" if obj == "whatsapp_business_account" else "instagram"
    for entry in doc.get("entry", []):
        entry_id = str(entry["id"])
        def env(field, account, payload):
            return compact({"request_id": "seed", "received_at": RECEIVED_AT, "object": obj,
                            "entry_id": entry_id, "field": field,
                            "account": {"channel": account[0], "account_id": account[1]},
                            "payload": payload})
        if obj == "instagram" and "messaging" in entry:
            yield env(None, (channel, entry_id), entry)
        for change in entry.get("changes") or []:
            value = change["value"]
            pnid = (value.get("metadata") or {}).get("phone_number_id") if obj != "instagram" and isinstance(value, dict) else None
            account = ("whatsapp", pnid) if pnid else (channel, entry_id)
            yield env(change["field"], account, value)

def texts(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k in ("body", "text", "title", "payload", "name") and isinstance(x, str):
                yield x
            yield from texts(x)
    elif isinstance(v, list):
        for x in v:
            yield from texts(x)

# webhook_verify_split
for body in bodies:
    put("webhook_verify_split", body)
    sig = "sha256=" + hmac.new(APP_SECRET, body, hashlib.sha256).hexdigest()
    put("webhook_verify_split", b"H:" + sig.encode() + b"\n" + body)
for hostile in [b"", b"{}", b"[]", b"not json", b'{"object":"page","entry":[]}',
                b'{"object":"instagram","entry":[{"id":"x"}]}', b"[" * 200,
                b"H:sha256=" + b"0" * 64 + b"\n{}", b"H:sha1=abc\n{}"]:
    put("webhook_verify_split", hostile)

# processor_parse
for body in bodies:
    for e in envelopes(body):
        put("processor_parse", e)
put("processor_parse", "{}")

# keyword_classify
seen = set()
with open(os.path.join(root, "shared", "src", "optout", "keywords", "tests.rs"), encoding="utf-8") as f:
    table = re.findall(r'\(\s*"((?:[^"\\]|\\.)*)",\s*Want', f.read())
for t in table + [t for b in bodies for t in texts(json.loads(b))]:
    t = re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), t)
    if t not in seen:
        seen.add(t)
        put("keyword_classify", t)
for t in ["chau|no molestar\nchau", "NO MÁS PROMOS\nno más promos, gracias", "stop|baja\nSTOP STOP",
          "ＳＴＯＰ", "Ba\u0301ja", "¼ ½ ¾", "İstanbul STOP", "ß\nSS"]:
    put("keyword_classify", t)

# cursor_decode: <page size byte><token>
def cursor(scope, position):
    return base64.urlsafe_b64encode(compact({"scope": scope, "position": position}).encode()).rstrip(b"=")
for limit, token in [
    (10, cursor("quarantine:REJECTED", "001799999880000#00000000-0000-0000-0000-000000000000")),
    (2, cursor("quarantine:REJECTED", "")),
    (1, cursor("contacts:tenant-a", "C#whatsapp#AR.1")),
    (50, cursor("audit:tenant-b", "0")),
    (10, cursor("quarantine:UNHANDLED", "x")),
    (10, cursor("quarantine:REJECTED", {"pk": {"S": "REJECTED"}})),
    (0, b"garbage!"), (101, b""), (10, b"c_AAAAAAAAAAAAAAAAAAAAAA"), (10, b"=" * 8),
]:
    put("cursor_decode", bytes([limit]) + token)

for target in sorted(os.listdir(corpus)):
    print(f"{target}: {len(os.listdir(os.path.join(corpus, target)))} seeds")
PY
