\set n :n + 1
INSERT INTO :tbl (id, customer_id, status, amount, note)
VALUES (:ins_base + :client_id * 10000000000 + :n, :n % 1000, 'new', 12.50, 'benchmark order');
