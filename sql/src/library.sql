-- ---------------------------------------------------------------------------------------------
-- C functions

CREATE OR REPLACE FUNCTION pg_sync._capture() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pg_sync_capture';
COMMENT ON FUNCTION pg_sync._capture() IS
    'Internal: the capture trigger function (C). Queues one event per tracked endpoint for each row '
    'a tracked table''s INSERT, UPDATE or DELETE changes, and for TRUNCATE; pg_sync creates and '
    'keeps its triggers (pg_sync_capture, pg_sync_capture_truncate).';

CREATE OR REPLACE FUNCTION pg_sync._config_changed() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_config_changed';
COMMENT ON FUNCTION pg_sync._config_changed() IS
    'Internal: tells this database''s delivery worker, when the transaction commits, that endpoints '
    'or tracking changed, so it reloads them.';

-- Wake this database's delivery worker when the transaction commits (config: also reload the
-- endpoints). Ask the launcher for a worker in this database at commit.
CREATE OR REPLACE FUNCTION pg_sync._wake(config bool DEFAULT false) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pg_sync_wake';
COMMENT ON FUNCTION pg_sync._wake(boolean) IS
    'Internal: wakes this database''s delivery worker when the transaction commits (config => true: '
    'to reload the endpoints too), and asks the launcher for a worker if none runs.';
CREATE OR REPLACE FUNCTION pg_sync._request_worker() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_request_worker';
COMMENT ON FUNCTION pg_sync._request_worker() IS
    'Internal: asks the launcher, at commit, to start a delivery worker for this database.';
CREATE OR REPLACE FUNCTION pg_sync._workers(OUT database text, OUT pid int, OUT started_at timestamptz,
                                 OUT last_active_at timestamptz, OUT state text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_workers';
COMMENT ON FUNCTION pg_sync._workers() IS
    'Internal: the delivery workers of every database from shared memory (database, pid, '
    'started_at, last_active_at, state); pg_sync.health() checks that this database has one.';
-- The same with each worker's last failed pass (since 0.3.0; a new function rather than a new OUT
-- parameter of _workers(), which an update could only change by dropping pg_sync.workers).
CREATE OR REPLACE FUNCTION pg_sync._worker_status(OUT database text, OUT pid int, OUT started_at timestamptz,
                                 OUT last_active_at timestamptz, OUT state text, OUT last_error text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_workers';
COMMENT ON FUNCTION pg_sync._worker_status() IS
    'Internal: the delivery workers of every database from shared memory, with each worker''s last '
    'failed pass (last_error); what the view pg_sync.workers shows.';

-- A filter is checked (and run) as the role that wrote it, under the session settings recorded
-- when it was written (_session_settings(): DateStyle, IntervalStyle, TimeZone,
-- standard_conforming_strings, extra_float_digits, bytea_output, xmloption, lc_monetary,
-- lc_numeric, as 'name=value').
-- role NULL: parsed as the caller without the author check (_reconcile after DDL: the author's
-- rights are checked before every run, and an author who lost them must not block the owner's DDL).
CREATE OR REPLACE FUNCTION pg_sync._check_filter(tbl regclass, filter text, role regrole, settings text[]) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_check_filter';
COMMENT ON FUNCTION pg_sync._check_filter(regclass, text, regrole, text[]) IS
    'Internal: checks that a filter expression compiles for the table, as the role that wrote it '
    '(role NULL: as the caller) under the session settings recorded with it; raises otherwise.';
CREATE OR REPLACE FUNCTION pg_sync._session_settings() RETURNS text[]
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pg_sync_session_settings';
COMMENT ON FUNCTION pg_sync._session_settings() IS
    'Internal: the session settings a filter is parsed and run under, as ''name=value'' (DateStyle, '
    'IntervalStyle, TimeZone, standard_conforming_strings, extra_float_digits, bytea_output, '
    'xmloption, lc_monetary, lc_numeric), recorded when the filter is written.';

-- NULL arguments are "not being set" and are not checked.
CREATE OR REPLACE FUNCTION pg_sync._check_endpoint(name text, url text, headers jsonb, secret text,
                                        batch_size int, max_attempts int, timeout_ms int,
                                        max_in_flight int, retry_base_ms int, retry_max_ms int,
                                        kafka_settings jsonb)
    RETURNS void LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pg_sync_check_endpoint';
COMMENT ON FUNCTION pg_sync._check_endpoint IS
    'Internal: validates an endpoint''s name, URL, headers, secret, limits and Kafka settings (C); '
    'raises with a clear message and changes nothing. NULL arguments are not being set and are not '
    'checked.';

-- The request format ('webhook' or 'cloudevents') of an endpoint with this URL; NULL: not being set.
CREATE OR REPLACE FUNCTION pg_sync._check_format(url text, format text)
    RETURNS void LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pg_sync_check_format';
COMMENT ON FUNCTION pg_sync._check_format(text, text) IS
    'Internal: refuses a request format other than webhook or cloudevents, and cloudevents for a '
    'kafka:// URL (C)';

-- create_endpoint's max_rate, max_request_bytes and permanent_statuses (core/validate); NULL
-- arguments are "not being set" and are not checked.
CREATE OR REPLACE FUNCTION pg_sync._check_delivery_limits(max_rate float8, max_request_bytes int,
                                                 permanent_statuses int[])
    RETURNS void LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pg_sync_check_delivery_limits';
COMMENT ON FUNCTION pg_sync._check_delivery_limits(float8, int, int[]) IS
    'Internal: refuses a max_rate, max_request_bytes or permanent_statuses out of bounds (C); NULL '
    'arguments are not checked';
-- The TLS material and OAuth2 setting an endpoint will have, with the URL and headers it will
-- have (src/pg/sql_endpoint_auth.cpp): PEM shape, key matches certificate, https only; oauth2
-- keys and token_url, http(s) only, no Authorization header beside it. NULL: not set.
CREATE OR REPLACE FUNCTION pg_sync._check_endpoint_auth(url text, headers jsonb, tls_client_cert text,
                                                        tls_client_key text, tls_ca text, oauth2 jsonb)
    RETURNS void LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pg_sync_check_endpoint_auth';
COMMENT ON FUNCTION pg_sync._check_endpoint_auth(text, jsonb, text, text, text, jsonb) IS
    'Internal: checks the TLS client certificate, key and CA bundle and the OAuth2 setting an '
    'endpoint will have, with its URL and headers; raises the first problem found.';

-- When a PEM certificate (the first of the text) expires; NULL when none decodes.
CREATE OR REPLACE FUNCTION pg_sync._cert_not_after(pem text) RETURNS timestamptz
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_cert_not_after';
COMMENT ON FUNCTION pg_sync._cert_not_after(text) IS
    'Internal: the end of the validity of the first certificate of a PEM text (the endpoints view).';

-- The origin of an http(s) URL: lower-case scheme and host, and the port (the scheme's default
-- when none is given), e.g. 'https://example.com:443'; of a kafka URL, every broker:
-- 'kafka://b1:9092,b2:9092'. NULL for a URL that is not valid.
CREATE OR REPLACE FUNCTION pg_sync._url_origin(url text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_url_origin';
COMMENT ON FUNCTION pg_sync._url_origin(text) IS
    'Internal: the origin of a URL: lower-case scheme and host and the port (the scheme''s default '
    'when none is given), e.g. https://example.com:443; of a kafka URL every broker. NULL for a URL '
    'that is not valid.';

-- Whether a URL names a Kafka topic (kafka://, any case): the same rule as the worker's.
CREATE OR REPLACE FUNCTION pg_sync._is_kafka_url(url text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_is_kafka_url';
COMMENT ON FUNCTION pg_sync._is_kafka_url(text) IS
    'Internal: whether a URL names a Kafka topic (kafka://, in any case), by the rule the delivery '
    'worker uses.';

-- Whether the calling role (current_user) may see row data and full URLs: members of
-- pgsync_admin (and superusers). The views use it to show monitors metadata only.
-- These three are C (src/pg/shown_data.cpp): the views call them once per row.
CREATE OR REPLACE FUNCTION pg_sync._sees_data() RETURNS bool
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pg_sync_sees_data';
COMMENT ON FUNCTION pg_sync._sees_data() IS
    'Internal: whether the calling role may see row data and full URLs (members of pgsync_admin, '
    'superusers); the views show monitors metadata only.';

-- What monitors see of an error message: its class, the text before the first ': ' ("HTTP 500",
-- "timeout", "invalid input syntax for type integer"); the rest can quote row data (a receiver's
-- answer echoing the payload, a value that failed to convert).
CREATE OR REPLACE FUNCTION pg_sync._error_class(message text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_error_class';
COMMENT ON FUNCTION pg_sync._error_class(text) IS
    'Internal: the class of an error message, the text before its first '': '' ("HTTP 500", '
    '"timeout"), which cannot quote row data.';

-- An error message as the caller may see it (views): whole for admins, its class for monitors.
CREATE OR REPLACE FUNCTION pg_sync._shown_error(message text) RETURNS text
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_shown_error';
COMMENT ON FUNCTION pg_sync._shown_error(text) IS
    'Internal: an error message as the caller may see it in the views: whole for admins, its class '
    'only for monitors (pg_sync._error_class()).';
