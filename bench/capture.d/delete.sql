\set n :n + 1
DELETE FROM :tbl WHERE id = :del_base + :client_id * 100000000 + :n;
