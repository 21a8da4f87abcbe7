-- A recent order's items change (a multi-row UPDATE); the order row first, as every transaction
-- that touches both does (no deadlocks).
SELECT last_value AS omax FROM orders_id_seq \gset
\set k random(greatest(1, :omax - 2000), :omax)
BEGIN;
UPDATE orders SET v = v + 1, total = total + 1, updated_at = now() WHERE id = :k;
UPDATE order_items SET v = v + 1, qty = qty + 1 WHERE order_id = :k;
COMMIT;
