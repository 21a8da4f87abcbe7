-- A new order with 1 to 4 items; the stock of one product goes down.
\set c random(1, :ncust)
\set p random(1, :nprod)
\set n random(1, 4)
BEGIN;
INSERT INTO orders (customer_id, status, total, note) VALUES (:c, 'new', 0, 'soak order') RETURNING id AS order_id \gset
INSERT INTO order_items (order_id, product_id, qty, price)
SELECT :order_id, 1 + (:p + g * 7) % :nprod, 1 + g % 3, 9.99 FROM generate_series(1, :n) g;
UPDATE products SET stock = stock - 1, v = v + 1, updated_at = now() WHERE id = :p;
COMMIT;
