\set n :n + 1
INSERT INTO :tbl (id, customer_id, status, amount, note)
SELECT :ins_base + :client_id * 10000000000 + :n * 1000 + g, g % 1000, 'new', 12.50, 'benchmark order'
  FROM generate_series(1, 1000) g;
