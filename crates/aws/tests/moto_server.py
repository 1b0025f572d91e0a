"""moto's server, one request at a time, with DynamoDB's transaction conflicts.

Serialised: moto's DynamoDB is not safe under concurrent requests: `TransactWriteItems`
checks each condition and applies each write in turn, and a cancelled transaction restores a
copy of the whole table taken when it began, so two racing transactions can both pass a
condition that only one should, or one can undo the other's committed writes. Real DynamoDB
serialises transactions on the same item. This wrapper serialises every request behind one
lock, so tests that race many writers (the room cap) see a linearizable store, as in
production.

Transaction conflicts (on by default): DynamoDB cancels a `TransactWriteItems` with reason
`TransactionConflict` for an item that another transaction in flight is writing, and refuses
a `PutItem`, `UpdateItem` or `DeleteItem` of such an item with `TransactionConflictException`
(AWS's "Transaction conflict handling": items of an ongoing `TransactWriteItems` cannot be
part of another one, nor be written alone). moto has no such thing: it applies each
transaction at once. Here each transaction stays "in flight" for MESHCALL_MOTO_CONFLICT_MS
(default 25 ms, about a real transaction's latency; 0 turns conflicts off) after moto applied
it: its items are held for that long, and its answer is only sent at the end, as a real
client would only hear back when the transaction is over. Any transaction (or lone write)
that touches a held item meanwhile is cancelled whole, the held items' reasons being
`TransactionConflict` and the others' `None`, which is at least as strict as DynamoDB (which
may also let some of those through). A transaction cancelled for a failed condition held its
items too (DynamoDB prepares every item before it can tell); one cancelled for a conflict
held none. Reads never conflict: DynamoDB's `GetItem`, `BatchGetItem` and `Query` read the
last committed state.

Usage: python moto_server.py -H 127.0.0.1 -p PORT   (the same arguments as moto.server)
"""

import io
import json
import os
import sys
import threading
import time

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

CONFLICT_SECONDS = float(os.environ.get("MESHCALL_MOTO_CONFLICT_MS", "25")) / 1000.0

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__
# (table, key) -> when the transaction holding it is over (time.monotonic()).
_held = {}
# table -> its key attribute names, learnt from CreateTable requests.
_key_names = {}

_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_LONE_WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def _key(table, action):
    """The item an action of a transaction (or a lone write) touches."""
    key = action.get("Key")
    if key is None:
        item = action.get("Item", {})
        names = _key_names.get(table)
        key = {n: item.get(n) for n in names} if names else item
    return (table, json.dumps(key, sort_keys=True))


def _items(operation, body):
    """The items a write request touches, in the request's order."""
    if operation == "TransactWriteItems":
        out = []
        for entry in body.get("TransactItems", []):
            (kind, action), = entry.items()
            out.append(_key(action.get("TableName"), action))
        return out
    return [_key(body.get("TableName"), body)]


def _conflict(operation, keys, now):
    """The answer to a request touching held items, or None."""
    held = [_held.get(k, 0.0) > now for k in keys]
    if not any(held):
        return None
    if operation == "TransactWriteItems":
        codes = ["TransactionConflict" if h else "None" for h in held]
        reasons = [
            {"Code": c, "Message": "Transaction is ongoing for the item"}
            if c != "None"
            else {"Code": "None"}
            for c in codes
        ]
        return {
            "__type": _PREFIX + "TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for "
            "specific reasons [" + ", ".join(codes) + "]",
            "CancellationReasons": reasons,
        }
    return {
        "__type": _PREFIX + "TransactionConflictException",
        "message": "Transaction is ongoing for the item",
    }


def _refuse(start_response, answer):
    data = json.dumps(answer).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", "meshcall-moto-conflict"),
        ],
    )
    return [data]


def _serial(self, environ, start_response):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    operation = target.rsplit(".", 1)[-1] if target.startswith("DynamoDB_") else ""
    watched = operation in ("TransactWriteItems", "CreateTable") + _LONE_WRITES
    body = None
    if watched:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
    hold = False
    with _lock:
        if body is not None and operation == "CreateTable":
            _key_names[body.get("TableName")] = [
                k.get("AttributeName") for k in body.get("KeySchema", [])
            ]
        keys = []
        if CONFLICT_SECONDS > 0 and body is not None and operation != "CreateTable":
            keys = _items(operation, body)
            answer = _conflict(operation, keys, time.monotonic())
            if answer is not None:
                print(f"meshcall-moto: {operation} refused: TransactionConflict", file=sys.stderr, flush=True)
                return _refuse(start_response, answer)
        status = []

        def recording_start_response(s, headers, *rest):
            status.append(s)
            return start_response(s, headers, *rest)

        # Drain the body inside the lock: a WSGI app may produce it lazily.
        out = list(_call(self, environ, recording_start_response))
        if keys and operation == "TransactWriteItems":
            ok = bool(status) and status[0].startswith("200")
            cancelled = any(b"TransactionCanceledException" in chunk for chunk in out)
            if ok or cancelled:
                until = time.monotonic() + CONFLICT_SECONDS
                for k in keys:
                    _held[k] = until
                hold = True
                if len(_held) > 10000:
                    now = time.monotonic()
                    for k in [k for k, t in _held.items() if t <= now]:
                        del _held[k]
    if hold:
        # In flight until now: its client hears back only when it is over.
        time.sleep(CONFLICT_SECONDS)
    return out


DomainDispatcherApplication.__call__ = _serial

if __name__ == "__main__":
    server.main()
