\set id random(1, 100000)
UPDATE :tbl SET status = 'paid', amount = amount + 1 WHERE id = :id;
