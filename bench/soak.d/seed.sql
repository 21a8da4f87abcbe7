-- Seed rows for bench/soak, inserted after tracking (so they are captured and checked like every
-- other change). :ncust customers, :nprod products.
\set ON_ERROR_STOP 1
INSERT INTO customers (name, email, city)
SELECT 'customer ' || g, 'c' || g || '@example.com', (ARRAY['Lyon', 'Oslo', 'Porto', 'Turin'])[1 + g % 4]
  FROM generate_series(1, :ncust) g;
INSERT INTO products (sku, name, price, stock)
SELECT 'SKU-' || lpad(g::text, 6, '0'), 'product ' || g, 1 + (g % 200) * 0.5, 1000000
  FROM generate_series(1, :nprod) g;
