#!/usr/bin/env python3
"""The statements inkcart runs for one POST /api/v1/orders on SQLite, replayed from one Python
thread for a number of seconds: what SQLite alone commits per second on this machine with
inkcart's settings (WAL, synchronous=NORMAL, foreign keys on), the ceiling of the orders case.

    bench/order_sqlite.py DB SECONDS BUYER_ID PRODUCT_ID PRODUCT_ID PRODUCT_ID

Prints one line: BENCH {"transactions": n, "seconds": s}. The two reads go through a second
connection, as inkcart reads through its reader pool and writes through its one writer.
"""

import datetime as dt
import json
import sqlite3
import sys
import time
import uuid


def main() -> int:
    db, seconds, buyer, *products = sys.argv[1:]
    buyer_id = uuid.UUID(buyer).bytes
    ids = sorted(uuid.UUID(p).bytes for p in products)
    writer = sqlite3.connect(db, isolation_level=None, timeout=30)
    reader = sqlite3.connect(db, isolation_level=None, timeout=30)
    for conn in (writer, reader):
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    marks = ", ".join("?" * len(ids))
    case = " ".join("WHEN id = ? THEN 1" for _ in ids)
    reserve = (f"UPDATE products SET stock = stock - CASE {case} ELSE 0 END, updated_at = ? "
               f"WHERE id IN (SELECT id FROM products WHERE id IN ({marks}) ORDER BY id) "
               f"AND active = ? AND stock >= CASE {case} ELSE 0 END RETURNING *")
    done = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        reader.execute("SELECT * FROM users WHERE id = ?", (buyer_id,)).fetchall()
        reader.execute(f"SELECT * FROM products WHERE id IN ({marks})", ids).fetchall()
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        order_id = uuid.uuid4().bytes
        writer.execute("BEGIN")
        taken = writer.execute(reserve, [*ids, now, *ids, True, *ids]).fetchall()
        if len(taken) != len(ids):
            writer.execute("ROLLBACK")
            raise SystemExit(f"stock ran out after {done} orders")
        writer.execute(
            "INSERT INTO orders (id, user_id, status, subtotal_cents, discount_cents, total_cents, "
            "created_at, updated_at) VALUES (?, ?, 'pending', 3000, 0, 3000, ?, ?)",
            (order_id, buyer_id, now, now))
        writer.execute(
            "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents, "
            "line_total_cents) VALUES " + ", ".join(["(?, ?, ?, 1, 1000, 1000)"] * len(ids)),
            [v for p in ids for v in (uuid.uuid4().bytes, order_id, p)])
        writer.execute(
            "INSERT INTO outbox_events (id, kind, subject_id, payload, created_at, dispatched_at) "
            "VALUES (?, 'OrderCreated', ?, '{\"type\":\"OrderCreated\"}', ?, ?)",
            (uuid.uuid4().bytes, order_id, now, now))
        writer.execute("COMMIT")
        done += 1
    print("BENCH " + json.dumps({"transactions": done, "seconds": float(seconds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
