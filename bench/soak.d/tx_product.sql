-- A product's price changes.
\set p random(1, :nprod)
UPDATE products SET v = v + 1, price = 1 + (price * 7 + v) % 100, updated_at = now() WHERE id = :p;
