-- A recent order moves on: new -> paid -> shipped -> delivered.
SELECT last_value AS omax FROM orders_id_seq \gset
\set k random(greatest(1, :omax - 2000), :omax)
UPDATE orders SET v = v + 1, updated_at = now(),
       status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE 'delivered' END
 WHERE id = :k;
