-- What of the pg_sync extension has no description (COMMENT ON), one row each, for
-- test/175_catalog_comments.sh: every member function, table (partitions included), view and
-- view column (pg_depend deptype 'e'), the schema, and every pg_sync.* setting that
-- pg_settings lists without a long description (extra_desc).
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pg_sync' AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure AS undocumented
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT CASE WHEN c.relkind = 'v' THEN 'view ' ELSE 'table ' END || c.oid::regclass
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind IN ('r', 'p', 'v') AND obj_description(c.oid, 'pg_class') IS NULL
UNION ALL
SELECT 'view column ' || c.oid::regclass || '.' || quote_ident(a.attname)
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind = 'v' AND col_description(c.oid, a.attnum) IS NULL
UNION ALL
SELECT 'schema ' || n.nspname
  FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
 WHERE obj_description(n.oid, 'pg_namespace') IS NULL
UNION ALL
SELECT 'setting ' || s.name FROM pg_settings s
 WHERE s.name LIKE 'pg_sync.%' AND coalesce(s.extra_desc, '') = ''
ORDER BY 1;
