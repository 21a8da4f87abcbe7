-- Changes that roll back: nothing of them may ever arrive (their versions would be phantoms).
\set c random(1, :ncust)
BEGIN;
UPDATE customers SET v = v + 1000000 WHERE id = :c;
INSERT INTO orders (customer_id, status, total, note) VALUES (:c, 'rolled back', 0, 'never delivered');
ROLLBACK;
