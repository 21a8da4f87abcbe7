-- An older order is cancelled and deleted with its items; their last versions go to tombstones in
-- the same transaction. The order row is locked first.
SELECT last_value AS omax FROM orders_id_seq \gset
\set k random(greatest(1, :omax - 5000), greatest(1, :omax - 1000))
BEGIN;
SELECT id FROM orders WHERE id = :k FOR UPDATE;
WITH d AS (DELETE FROM order_items WHERE order_id = :k RETURNING id, v)
INSERT INTO tombstones SELECT 'order_items', id, v FROM d;
WITH d AS (DELETE FROM orders WHERE id = :k RETURNING id, v)
INSERT INTO tombstones SELECT 'orders', id, v FROM d;
COMMIT;
