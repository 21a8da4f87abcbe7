-- ---------------------------------------------------------------------------------------------
-- Endpoints

-- A kafka:// URL delivers to a Kafka topic (README, "Kafka"): kafka_settings holds the
-- librdkafka settings it allows (core/kafka_config.hpp); such an endpoint has no headers and no
-- secret. format: 'webhook' ({"events": [...]}) or 'cloudevents' (CloudEvents JSON batch mode,
-- src/core/cloudevents.hpp); a Kafka endpoint takes only 'webhook'. max_in_flight NULL (the
-- default) is @default:max_in_flight@ for a webhook, @default:kafka_max_in_flight@ for Kafka
-- (src/core/endpoint_defaults.hpp).
CREATE OR REPLACE FUNCTION pg_sync.create_endpoint(
    name text, url text, headers jsonb DEFAULT '{}', secret text DEFAULT NULL,
    batch_size int DEFAULT @default:batch_size@, max_attempts int DEFAULT @default:max_attempts@,
    timeout_ms int DEFAULT @default:timeout_ms@, max_in_flight int DEFAULT NULL,
    retry_base_ms int DEFAULT @default:retry_base_ms@, retry_max_ms int DEFAULT @default:retry_max_ms@,
    kafka_settings jsonb DEFAULT '{}',
    max_rate float8 DEFAULT @default:max_rate@, max_request_bytes int DEFAULT @default:max_request_bytes@,
    permanent_statuses int[] DEFAULT '{}', format text DEFAULT 'webhook',
    tls_client_cert text DEFAULT NULL, tls_client_key text DEFAULT NULL, tls_ca text DEFAULT NULL,
    oauth2 jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF create_endpoint.max_in_flight IS NULL THEN
        create_endpoint.max_in_flight := CASE WHEN pg_sync._is_kafka_url(create_endpoint.url)
                                              THEN @default:kafka_max_in_flight@ ELSE @default:max_in_flight@ END;
    END IF;
    PERFORM pg_sync._require(create_endpoint.name, 'name');
    PERFORM pg_sync._require(create_endpoint.url, 'url');
    PERFORM pg_sync._require(create_endpoint.headers, 'headers');
    PERFORM pg_sync._require(create_endpoint.batch_size, 'batch_size');
    PERFORM pg_sync._require(create_endpoint.max_attempts, 'max_attempts');
    PERFORM pg_sync._require(create_endpoint.timeout_ms, 'timeout_ms');
    PERFORM pg_sync._require(create_endpoint.retry_base_ms, 'retry_base_ms');
    PERFORM pg_sync._require(create_endpoint.retry_max_ms, 'retry_max_ms');
    PERFORM pg_sync._require(create_endpoint.kafka_settings, 'kafka_settings');
    PERFORM pg_sync._require(create_endpoint.format, 'format');
    PERFORM pg_sync._require(create_endpoint.max_rate, 'max_rate');
    PERFORM pg_sync._require(create_endpoint.max_request_bytes, 'max_request_bytes');
    PERFORM pg_sync._require(create_endpoint.permanent_statuses, 'permanent_statuses');
    PERFORM pg_sync._require(create_endpoint.oauth2, 'oauth2');
    PERFORM pg_sync._check_endpoint(create_endpoint.name, create_endpoint.url,
        create_endpoint.headers, create_endpoint.secret, create_endpoint.batch_size,
        create_endpoint.max_attempts, create_endpoint.timeout_ms, create_endpoint.max_in_flight,
        create_endpoint.retry_base_ms, create_endpoint.retry_max_ms, create_endpoint.kafka_settings);
    PERFORM pg_sync._check_format(create_endpoint.url, create_endpoint.format);
    PERFORM pg_sync._check_delivery_limits(create_endpoint.max_rate, create_endpoint.max_request_bytes,
        create_endpoint.permanent_statuses);
    PERFORM pg_sync._check_endpoint_auth(create_endpoint.url, create_endpoint.headers,
        nullif(create_endpoint.tls_client_cert, ''), nullif(create_endpoint.tls_client_key, ''),
        nullif(create_endpoint.tls_ca, ''), create_endpoint.oauth2);
    IF EXISTS (SELECT FROM pg_sync._endpoints e WHERE e.name = create_endpoint.name) THEN
        RAISE EXCEPTION 'endpoint "%" already exists', create_endpoint.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use pg_sync.alter_endpoint() to change it.';
    END IF;
    INSERT INTO pg_sync._endpoints (name, url, headers, secret, batch_size, max_attempts,
                                    timeout_ms, max_in_flight, retry_base_ms, retry_max_ms,
                                    kafka_settings, max_rate, max_request_bytes, permanent_statuses, format,
                                    tls_client_cert, tls_client_key, tls_ca, oauth2)
    VALUES (create_endpoint.name, create_endpoint.url, create_endpoint.headers,
            create_endpoint.secret, create_endpoint.batch_size, create_endpoint.max_attempts,
            create_endpoint.timeout_ms, create_endpoint.max_in_flight,
            create_endpoint.retry_base_ms, create_endpoint.retry_max_ms,
            create_endpoint.kafka_settings, create_endpoint.max_rate, create_endpoint.max_request_bytes,
            create_endpoint.permanent_statuses, create_endpoint.format, nullif(create_endpoint.tls_client_cert, ''),
            nullif(create_endpoint.tls_client_key, ''), nullif(create_endpoint.tls_ca, ''),
            create_endpoint.oauth2);
    PERFORM pg_sync._wake(true);
END
$$;
COMMENT ON FUNCTION pg_sync.create_endpoint IS
    'Registers a target: an http(s) webhook (optional headers, and a secret to sign requests the '
    'Standard Webhooks way) or a kafka://brokers/topic (kafka_settings: the librdkafka settings '
    'pg_sync allows). batch_size: events per request; max_attempts before an event becomes a dead '
    'letter; timeout_ms per request; max_in_flight: requests at once (by default @default:max_in_flight@, '
    'for Kafka @default:kafka_max_in_flight@); retry_base_ms and retry_max_ms: the retry backoff. '
    'https only: tls_client_cert and tls_client_key (PEM, the key never shown), tls_ca (PEM CA bundle '
    'instead of the system''s). oauth2: client credentials (token_url, client_id, client_secret, '
    'scope, audience, client_auth), the worker fetches and refreshes the bearer token. For pgsync_admin.';

-- NULL leaves a setting unchanged; secret => '' removes the secret, headers => '{}' removes
-- all headers, kafka_settings => '{}' all Kafka settings, tls_client_cert => '' (with
-- tls_client_key => '') the client certificate, tls_ca => '' the CA bundle, oauth2 => '{}' the
-- OAuth2 credentials (oauth2 is replaced whole). Credentials never follow a URL to another
-- origin: a url of another origin (scheme, host, port; for Kafka, the broker list) is refused
-- unless the same call gives headers (when the endpoint has any), secret (when it has one),
-- kafka_settings (when it has any: they can hold SASL credentials), tls_client_key (when it has
-- one) and oauth2 (when it has it) again, so that no admin can point another admin's endpoint at
-- a host of their choosing and receive its Authorization header, signed payloads, SASL password,
-- client certificate or access tokens. A changed tls_ca (set, replaced or removed) needs them
-- again too: a CA of the caller's choosing could vouch for a server of theirs at the same origin.
-- A url change sends the rows of every table tracked for the endpoint somewhere else: the caller
-- must be able to read them all (the same right track() asks for).
-- A secret given here (a new one, or '' to remove it) ends a rotation in progress
-- (pg_sync.rotate_secret): the previous secret signs nothing any more.
-- pg_sync.alter_endpoint() is C (pg_sync_with_caller, src/pg/sql_api.cpp): it runs this as the
-- extension's owner with the real caller (current_user) as the last argument.
CREATE OR REPLACE FUNCTION pg_sync._alter_endpoint(
    name text, url text, headers jsonb, secret text, batch_size int, max_attempts int, timeout_ms int,
    max_in_flight int, retry_base_ms int, retry_max_ms int, kafka_settings jsonb,
    max_rate float8, max_request_bytes int, permanent_statuses int[], format text,
    tls_client_cert text, tls_client_key text, tls_ca text, oauth2 jsonb, caller regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep pg_sync._endpoints;
    unreadable regclass;
    moved bool;
BEGIN
    SELECT * INTO ep FROM pg_sync._endpoints e
     WHERE e.id = pg_sync._endpoint_id(_alter_endpoint.name, 'no key update');
    -- The URL is checked with the headers, secret and Kafka settings the endpoint will have
    -- (which go with which kind of URL).
    PERFORM pg_sync._check_endpoint(NULL, coalesce(_alter_endpoint.url, ep.url),
        coalesce(_alter_endpoint.headers, ep.headers),
        CASE WHEN _alter_endpoint.secret IS NULL THEN ep.secret ELSE nullif(_alter_endpoint.secret, '') END,
        _alter_endpoint.batch_size, _alter_endpoint.max_attempts,
        _alter_endpoint.timeout_ms, _alter_endpoint.max_in_flight,
        coalesce(_alter_endpoint.retry_base_ms, ep.retry_base_ms),
        coalesce(_alter_endpoint.retry_max_ms, ep.retry_max_ms),
        coalesce(_alter_endpoint.kafka_settings, ep.kafka_settings));
    PERFORM pg_sync._check_format(coalesce(_alter_endpoint.url, ep.url), coalesce(_alter_endpoint.format, ep.format));
    PERFORM pg_sync._check_delivery_limits(_alter_endpoint.max_rate, _alter_endpoint.max_request_bytes,
        _alter_endpoint.permanent_statuses);
    PERFORM pg_sync._check_endpoint_auth(coalesce(_alter_endpoint.url, ep.url),
        coalesce(_alter_endpoint.headers, ep.headers),
        CASE WHEN _alter_endpoint.tls_client_cert IS NULL THEN ep.tls_client_cert
             ELSE nullif(_alter_endpoint.tls_client_cert, '') END,
        CASE WHEN _alter_endpoint.tls_client_key IS NULL THEN ep.tls_client_key
             ELSE nullif(_alter_endpoint.tls_client_key, '') END,
        CASE WHEN _alter_endpoint.tls_ca IS NULL THEN ep.tls_ca ELSE nullif(_alter_endpoint.tls_ca, '') END,
        coalesce(_alter_endpoint.oauth2, ep.oauth2));
    IF _alter_endpoint.url IS NOT NULL AND _alter_endpoint.url IS DISTINCT FROM ep.url THEN
        SELECT t.tbl INTO unreadable FROM pg_sync._tracked t
         WHERE t.endpoint_id = ep.id AND NOT has_table_privilege(caller, t.tbl, 'SELECT')
         ORDER BY t.tbl::oid LIMIT 1;
        IF unreadable IS NOT NULL THEN
            RAISE EXCEPTION 'permission denied to change the URL of endpoint %', pg_sync._quote(_alter_endpoint.name)
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s may not read table %s, which is tracked for the endpoint: its rows would go to the new URL.',
                                      caller, unreadable),
                      HINT = 'Ask a role that may read every table tracked for the endpoint.';
        END IF;
    END IF;
    -- A new tls_ca is a new judge of which server is the receiver (a CA of the caller's could
    -- vouch for a server of theirs at the same origin): it needs the credentials again too.
    moved := _alter_endpoint.url IS NOT NULL
             AND pg_sync._url_origin(_alter_endpoint.url) IS DISTINCT FROM pg_sync._url_origin(ep.url);
    IF (moved OR _alter_endpoint.tls_ca IS NOT NULL AND nullif(_alter_endpoint.tls_ca, '') IS DISTINCT FROM ep.tls_ca)
       AND (ep.headers <> '{}' AND _alter_endpoint.headers IS NULL
            OR ep.secret IS NOT NULL AND _alter_endpoint.secret IS NULL
            OR ep.kafka_settings <> '{}' AND _alter_endpoint.kafka_settings IS NULL
            OR ep.tls_client_key IS NOT NULL AND _alter_endpoint.tls_client_key IS NULL
            OR ep.oauth2 <> '{}' AND _alter_endpoint.oauth2 IS NULL) THEN
        RAISE EXCEPTION 'the new % of endpoint % %: its % must be given again',
                        CASE WHEN moved THEN 'URL' ELSE 'tls_ca' END,
                        pg_sync._quote(_alter_endpoint.name),
                        CASE WHEN moved THEN 'is on another origin' ELSE 'changes which server is trusted' END,
                        array_to_string(ARRAY[
                            CASE WHEN ep.headers <> '{}' AND _alter_endpoint.headers IS NULL THEN 'headers' END,
                            CASE WHEN ep.secret IS NOT NULL AND _alter_endpoint.secret IS NULL THEN 'secret' END,
                            CASE WHEN ep.kafka_settings <> '{}' AND _alter_endpoint.kafka_settings IS NULL
                                 THEN 'kafka_settings' END,
                            CASE WHEN ep.tls_client_key IS NOT NULL AND _alter_endpoint.tls_client_key IS NULL
                                 THEN 'tls_client_cert and tls_client_key' END,
                            CASE WHEN ep.oauth2 <> '{}' AND _alter_endpoint.oauth2 IS NULL THEN 'oauth2' END], ' and ')
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = CASE WHEN moved THEN
                      format('The endpoint''s credentials (headers, secret, Kafka settings, client certificate, OAuth2) were given for %s; they are not sent to %s unless the same call gives them.',
                             pg_sync._url_origin(ep.url), pg_sync._url_origin(_alter_endpoint.url))
                      ELSE 'A CA bundle decides which server is taken for the receiver: the endpoint''s credentials (headers, secret, client certificate, OAuth2) are not sent to a server a new one vouches for unless the same call gives them.' END,
                  HINT = 'Pass them again with the new url, or drop them: headers => ''{}'', secret => '''', kafka_settings => ''{}'', tls_client_cert => '''' with tls_client_key => '''', oauth2 => ''{}''.';
    END IF;
    UPDATE pg_sync._endpoints e SET
        url           = coalesce(_alter_endpoint.url, e.url),
        headers       = coalesce(_alter_endpoint.headers, e.headers),
        secret        = CASE WHEN _alter_endpoint.secret IS NULL THEN e.secret
                             ELSE nullif(_alter_endpoint.secret, '') END,
        batch_size    = coalesce(_alter_endpoint.batch_size, e.batch_size),
        max_attempts  = coalesce(_alter_endpoint.max_attempts, e.max_attempts),
        timeout_ms    = coalesce(_alter_endpoint.timeout_ms, e.timeout_ms),
        max_in_flight = coalesce(_alter_endpoint.max_in_flight, e.max_in_flight),
        retry_base_ms = coalesce(_alter_endpoint.retry_base_ms, e.retry_base_ms),
        retry_max_ms  = coalesce(_alter_endpoint.retry_max_ms, e.retry_max_ms),
        kafka_settings = coalesce(_alter_endpoint.kafka_settings, e.kafka_settings),
        max_rate      = coalesce(_alter_endpoint.max_rate, e.max_rate),
        max_request_bytes = coalesce(_alter_endpoint.max_request_bytes, e.max_request_bytes),
        permanent_statuses = coalesce(_alter_endpoint.permanent_statuses, e.permanent_statuses),
        format        = coalesce(_alter_endpoint.format, e.format),
        previous_secret = CASE WHEN _alter_endpoint.secret IS NULL THEN e.previous_secret END,
        previous_secret_until = CASE WHEN _alter_endpoint.secret IS NULL THEN e.previous_secret_until END,
        tls_client_cert = CASE WHEN _alter_endpoint.tls_client_cert IS NULL THEN e.tls_client_cert
                               ELSE nullif(_alter_endpoint.tls_client_cert, '') END,
        tls_client_key = CASE WHEN _alter_endpoint.tls_client_key IS NULL THEN e.tls_client_key
                              ELSE nullif(_alter_endpoint.tls_client_key, '') END,
        tls_ca        = CASE WHEN _alter_endpoint.tls_ca IS NULL THEN e.tls_ca
                             ELSE nullif(_alter_endpoint.tls_ca, '') END,
        oauth2        = coalesce(_alter_endpoint.oauth2, e.oauth2)
     WHERE e.id = ep.id;
    PERFORM pg_sync._wake(true);
END
$$;
COMMENT ON FUNCTION pg_sync._alter_endpoint IS
    'Internal: the body of pg_sync.alter_endpoint(), run as the extension''s owner with the real '
    'caller as its last argument (who must be able to read every tracked table for a URL change).';

CREATE OR REPLACE FUNCTION pg_sync.alter_endpoint(
    name text, url text DEFAULT NULL, headers jsonb DEFAULT NULL, secret text DEFAULT NULL,
    batch_size int DEFAULT NULL, max_attempts int DEFAULT NULL, timeout_ms int DEFAULT NULL,
    max_in_flight int DEFAULT NULL, retry_base_ms int DEFAULT NULL, retry_max_ms int DEFAULT NULL,
    kafka_settings jsonb DEFAULT NULL, max_rate float8 DEFAULT NULL, max_request_bytes int DEFAULT NULL,
    permanent_statuses int[] DEFAULT NULL, format text DEFAULT NULL,
    tls_client_cert text DEFAULT NULL, tls_client_key text DEFAULT NULL, tls_ca text DEFAULT NULL,
    oauth2 jsonb DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_with_caller';
COMMENT ON FUNCTION pg_sync.alter_endpoint IS
    'Changes the given settings of an endpoint; NULL leaves one unchanged, secret => '''' removes '
    'the secret, headers => ''{}'' all headers, kafka_settings => ''{}'' all Kafka settings. A URL '
    'of another origin is refused unless the same call gives the credentials (headers, secret, '
    'kafka_settings, client certificate, oauth2 the endpoint has) again; tls_client_cert => '''' '
    'with tls_client_key => '''', tls_ca => '''' and oauth2 => ''{}'' drop them. For pgsync_admin.';

-- Secret rotation without downtime: new_secret signs from now on and, for `overlap`, the current
-- secret signs every request too (webhook-signature "v1,<new> v1,<previous>"), so that receivers
-- can move to the new secret at their pace. When the overlap ends the worker stops signing with
-- the previous secret at once (it checks the time for every request) and erases it at its next
-- pass. Returns the end of the overlap (pg_sync.endpoints.secret_rotation_until shows it).
-- Refused: an endpoint without secret (set the first one with alter_endpoint(secret => ...)), a
-- Kafka endpoint (records are not signed), a new secret that is the current one, a negative
-- overlap. Rotating again during an overlap keeps only the secret current until then as the
-- previous one. overlap => '0' replaces the secret at once.
CREATE OR REPLACE FUNCTION pg_sync.rotate_secret(endpoint text, new_secret text, overlap interval DEFAULT '24 hours')
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep pg_sync._endpoints;
    until timestamptz;
BEGIN
    PERFORM pg_sync._require(rotate_secret.new_secret, 'new_secret');
    PERFORM pg_sync._require(rotate_secret.overlap, 'overlap');
    -- (now() + overlap, not overlap itself: '1 month -30 days' is not negative, yet ends in the past
    -- in February.)
    IF now() + rotate_secret.overlap < now() THEN
        RAISE EXCEPTION 'overlap must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', rotate_secret.overlap),
                  HINT = 'The overlap is how long the previous secret signs too, for example ''24 hours''.';
    END IF;
    SELECT * INTO ep FROM pg_sync._endpoints e
     WHERE e.id = pg_sync._endpoint_id(rotate_secret.endpoint, 'no key update');
    IF pg_sync._is_kafka_url(ep.url) THEN
        RAISE EXCEPTION 'endpoint % delivers to Kafka: it has no secret to rotate', pg_sync._quote(rotate_secret.endpoint)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Kafka records are not signed.';
    END IF;
    IF ep.secret IS NULL THEN
        RAISE EXCEPTION 'endpoint % has no secret to rotate', pg_sync._quote(rotate_secret.endpoint)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set its first secret with pg_sync.alter_endpoint(name, secret => ...).';
    END IF;
    PERFORM pg_sync._check_endpoint(NULL, NULL, NULL, rotate_secret.new_secret, NULL, NULL, NULL, NULL,
                                    NULL, NULL, NULL);
    IF rotate_secret.new_secret = ep.secret THEN
        RAISE EXCEPTION 'the new secret of endpoint % is its current secret', pg_sync._quote(rotate_secret.endpoint)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    until := now() + rotate_secret.overlap;
    UPDATE pg_sync._endpoints e SET
        secret = rotate_secret.new_secret,
        previous_secret = CASE WHEN until > now() THEN ep.secret END,
        previous_secret_until = CASE WHEN until > now() THEN until END
     WHERE e.id = ep.id;
    PERFORM pg_sync._wake(true);
    RETURN until;
END
$$;
COMMENT ON FUNCTION pg_sync.rotate_secret(text, text, interval) IS
    'Replaces an endpoint''s signing secret without downtime: until now() + overlap every request '
    'carries both signatures (new and previous) in webhook-signature, then only the new one; '
    'returns when the overlap ends (pg_sync.endpoints.secret_rotation_until)';

CREATE OR REPLACE FUNCTION pg_sync.drop_endpoint(name text, force bool DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
    tables regclass[];
    attempt int := 0;
    pending bigint;
    t regclass;
BEGIN
    PERFORM pg_sync._require(force, 'force');
    ep_id := pg_sync._endpoint_id(drop_endpoint.name, 'none');
    -- Wait for the transactions that may have queued events for the endpoint and not committed
    -- yet, so that the count below sees their events and nothing arrives for a deleted endpoint
    -- afterwards, and hold new ones back until this transaction ends:
    --   1. the tables tracked for it, in SHARE mode (writers that captured; untrack waits for
    --      the writers of a table too, so a table untracked earlier has none left);
    --   2. its row FOR UPDATE (emit, track, untrack, redeliver, backfill hold KEY SHARE on it;
    --      alter, pause, resume NO KEY UPDATE).
    -- Writers take these in either order (a transaction may write a tracked table, then emit,
    -- or emit, then write), so holding one while waiting for the other could deadlock with
    -- them. The row is therefore only tried (NOWAIT) while the tables are held; when it is
    -- busy, the table locks are given back (a subtransaction is rolled back), its holders are
    -- waited for while holding nothing, and everything is tried again. (After 100 tries, the
    -- row is waited for while the tables are held: a deadlock is then detected and reported.)
    LOOP
        attempt := attempt + 1;
        tables := ARRAY(SELECT tr.tbl FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id ORDER BY tr.tbl::oid);
        BEGIN
            FOREACH t IN ARRAY tables LOOP
                EXECUTE format('LOCK TABLE %s IN SHARE MODE', t);
            END LOOP;
            BEGIN
                IF attempt < 100 THEN
                    PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE NOWAIT;
                ELSE
                    PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                RAISE SQLSTATE 'PSRTY'; -- give the table locks back too
            END;
            IF NOT FOUND THEN
                PERFORM pg_sync._no_endpoint(drop_endpoint.name); -- dropped meanwhile
            END IF;
            -- While the row is locked, nobody can track a table for the endpoint; if one was
            -- tracked before, lock it too: try again.
            IF tables = ARRAY(SELECT tr.tbl FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id
                               ORDER BY tr.tbl::oid) THEN
                EXIT;
            END IF;
            RAISE SQLSTATE 'PSRTY';
        EXCEPTION WHEN SQLSTATE 'PSRTY' THEN
            NULL;
        END;
        -- Wait for the row's current holders, holding nothing.
        BEGIN
            PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE;
            RAISE SQLSTATE 'PSRTY';
        EXCEPTION WHEN SQLSTATE 'PSRTY' THEN
            NULL;
        END;
    END LOOP;

    SELECT count(*) INTO pending FROM pg_sync._queue q WHERE q.endpoint_id = ep_id;
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'endpoint "%" has % pending event%', drop_endpoint.name, pending,
                        CASE WHEN pending = 1 THEN '' ELSE 's' END
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until they are delivered, or call pg_sync.drop_endpoint(name, force => true) to discard them.';
    END IF;
    SELECT count(*) INTO pending FROM pg_sync._dead_letters d WHERE d.endpoint_id = ep_id;
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'endpoint "%" has % dead letter%', drop_endpoint.name, pending,
                        CASE WHEN pending = 1 THEN '' ELSE 's' END
            USING ERRCODE = 'object_in_use',
                  HINT = 'Look at pg_sync.dead_letters first, or call pg_sync.drop_endpoint(name, force => true) to discard them.';
    END IF;
    -- Queue first, then dead letters: the worker moves events from the queue to the dead
    -- letters (without an endpoint lock); one it moves meanwhile is then found in the second.
    DELETE FROM pg_sync._queue q WHERE q.endpoint_id = ep_id;
    DELETE FROM pg_sync._dead_letters d WHERE d.endpoint_id = ep_id;
    DELETE FROM pg_sync._endpoint_state s WHERE s.endpoint_id = ep_id;
    DELETE FROM pg_sync._attempts a WHERE a.endpoint_id = ep_id;
    FOR t IN DELETE FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id RETURNING tr.tbl LOOP
        PERFORM pg_sync._sync_triggers(t);
    END LOOP;
    DELETE FROM pg_sync._endpoints e WHERE e.id = ep_id;
    PERFORM pg_sync._config_changed();
END
$$;
COMMENT ON FUNCTION pg_sync.drop_endpoint(text, boolean) IS
    'Drops an endpoint and its tracking. Refused while events are pending unless force => true, '
    'which discards them; waits first for open transactions that wrote to its tracked tables or '
    'emitted to it. For pgsync_admin.';

-- The row lock is taken whether or not the endpoint is paused already, so that concurrent
-- pauses and resumes are serialized (the last to commit wins), and an unknown name is an error.
CREATE OR REPLACE FUNCTION pg_sync.pause_endpoint(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
BEGIN
    ep_id := pg_sync._endpoint_id(pause_endpoint.name, 'no key update');
    UPDATE pg_sync._endpoints e SET paused = true, paused_reason = 'paused by ' || session_user
     WHERE e.id = ep_id AND NOT e.paused;
    PERFORM pg_sync._wake(true);
END
$$;
COMMENT ON FUNCTION pg_sync.pause_endpoint(text) IS
    'Stops sending to an endpoint; capture goes on and events wait in the queue. Idempotent. For '
    'pgsync_admin.';

CREATE OR REPLACE FUNCTION pg_sync.resume_endpoint(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
BEGIN
    ep_id := pg_sync._endpoint_id(resume_endpoint.name, 'no key update');
    UPDATE pg_sync._endpoints e SET paused = false, paused_reason = NULL WHERE e.id = ep_id;
    PERFORM pg_sync._wake(true);
END
$$;
COMMENT ON FUNCTION pg_sync.resume_endpoint(text) IS
    'Restarts sending to a paused endpoint (also one paused by pg_sync itself, see paused_reason). '
    'Idempotent. For pgsync_admin.';
