-- A customer changes their e-mail address.
\set c random(1, :ncust)
UPDATE customers SET v = v + 1, email = 'c' || id || '.' || (v + 1) || '@example.com', updated_at = now()
 WHERE id = :c;
