#!/usr/bin/env python3
# Writes the audit_verify seeds: logs in the exact format airlock-common
# writes (see airlock-common/src/audit/record.rs and head.rs), with and
# without a head anchor, and one restarted after damage. Run from fuzz/.
import hashlib, json, sys
GENESIS = "0"*64
def canon(v): return json.dumps(v, sort_keys=True, separators=(',',':'), ensure_ascii=False)
def record(seq, ts, event, fields, prev):
    body = dict(fields); body.update(seq=seq, ts=ts, event=event, prev=prev)
    h = hashlib.sha256((prev + "\n" + canon(body)).encode()).hexdigest()
    line = '{"seq":%d,"ts":%s,"event":%s' % (seq, canon(ts), canon(event))
    for k in sorted(fields): line += ',' + canon(k) + ':' + canon(fields[k])
    line += ',"prev":' + canon(prev) + ',"hash":' + canon(h) + '}'
    return line, h
def log(events, start_prev=GENESIS, start_seq=1):
    lines, prev, seq = [], start_prev, start_seq
    for i, (event, fields) in enumerate(events):
        line, prev = record(seq, "2026-11-22T20:%02d:13Z" % i, event, fields, prev)
        lines.append(line); seq += 1
    return lines, seq - 1, prev
def slots(seq, h):
    out = [b" "*159 + b"\n", b" "*159 + b"\n"]
    for s, hh in ((seq - 1, None), (seq, h)):
        pass
    check = hashlib.sha256(f"{seq}:{h}".encode()).hexdigest()[:16]
    slot = json.dumps({"seq": seq, "hash": h, "check": check}, separators=(',',':')).encode()
    out[seq % 2] = slot + b" "*(159-len(slot)) + b"\n"
    return b"".join(out)
events = [
    ("service_started", {"service": "gateway"}),
    ("access_requested", {"service": "gateway", "request_id": "req-1", "scope": "command:terraform plan", "reason": "plan the change", "uid": 1000}),
    ("grant_issued", {"service": "totp", "grant_id": "g1", "request_id": "req-1", "expires_at": 1795000000}),
    ("session_started", {"service": "gateway", "session": "ses-1", "role": "default", "uid": 1000, "search_path": ["/usr/bin", "/bin"]}),
    ("exec_blocked", {"service": "enforcer", "session": "ses-1", "argv": ["terraform", "apply"], "rule": "terraform apply", "ok": True, "nothing": None}),
]
lines, seq, h = log(events)
text = "".join(l + "\n" for l in lines).encode()
open("corpus/audit_verify/log-no-head", "wb").write(text)
open("corpus/audit_verify/log-with-head", "wb").write(slots(seq, h) + b"\0" + text)
legacy = json.dumps({"seq": seq, "hash": h}).encode() + b"\n"
open("corpus/audit_verify/log-legacy-head", "wb").write(legacy + b"\0" + text)
# A restarted chain: damage, then chain_restarted linking to the last good record.
damaged = lines[:3] + ['{"seq":4,"garbage":true}']
restart, seq2, h2 = log([("chain_restarted", {"reason": "fuzz", "broken_at_seq": 4, "head_seq": 5, "head_hash": h}), ("service_started", {"service": "gateway"})], start_prev=record(3, "2026-11-22T20:02:13Z", events[2][0], events[2][1], log(events[:2])[2])[1], start_seq=4)
text2 = "".join(l + "\n" for l in damaged + restart).encode()
open("corpus/audit_verify/log-restarted", "wb").write(slots(seq2, h2) + b"\0" + text2)
open("corpus/audit_verify/empty-with-head", "wb").write(b"\0")
