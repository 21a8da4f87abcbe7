-- TLS client certificates, private CAs and OAuth2 client credentials of http(s) endpoints
-- (README, "Authenticating to receivers"): what is accepted, what is refused, what is shown.
-- The certificate and keys below are test material made for this file only (EC P-256,
-- self-signed, valid for 100 years).
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
-- (\gset: psql variables cert, key and other_key; :'name' quotes them as literals.)
SELECT $pem$-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUBSvbxodxsSpP9RQh5GJm2YHw0V8wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPcGdfc3luYyByZWdyZXNzMCAXDTI2MTIwNjEwMDMxM1oYDzIx
MjYxMTEyMTAwMzEzWjAaMRgwFgYDVQQDDA9wZ19zeW5jIHJlZ3Jlc3MwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQVuOkpW1qSp42EgZWC1dxycd1LsONjezCPIb2O
AWr7ruPFKHIgvOJ7MwadG2yqlIw7LPEJmcDxrKeWLA6SbiZlo1MwUTAdBgNVHQ4E
FgQUQcQ00dByiGbsI4vOnctgYVjkrYEwHwYDVR0jBBgwFoAUQcQ00dByiGbsI4vO
nctgYVjkrYEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAg35P
nU4rLPrk+WFaW8Ji2Gb5IxzE4dBJ+86dONvjXU8CID3SWWQhKMmQDM6PAn887CKt
EzB2gA0ezqHUR7tEdUfA
-----END CERTIFICATE-----$pem$ AS cert,
       $pem$-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVFXmX4h9McJSmCYr
r2QYT6zY0ozoHQA3kB+lGKmd8s2hRANCAAQVuOkpW1qSp42EgZWC1dxycd1LsONj
ezCPIb2OAWr7ruPFKHIgvOJ7MwadG2yqlIw7LPEJmcDxrKeWLA6SbiZl
-----END PRIVATE KEY-----$pem$ AS key,
       $pem$-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzNkW4mjMqG638ccn
4XCWjSWbsKIT5oUJScf2xwpgqPahRANCAAR66xCepW+jBV+s4Psjyasbh5ymkxuc
RCfoXKwGv4spjmP+p30FpGqof2z2cAkFsjcoaJvtXYrWjHHHBK5CqZJJ
-----END PRIVATE KEY-----$pem$ AS other_key
\gset
CREATE VIEW ep AS
SELECT name, url, header_names, has_tls_client_key, tls_client_cert_expires, has_tls_ca, oauth2
  FROM pg_sync.endpoints ORDER BY name;

-- TLS: a client certificate with its key, and a CA bundle (here the same self-signed certificate).
SELECT pg_sync.create_endpoint('mtls', 'https://hooks.example.com/in', tls_client_cert => :'cert',
                               tls_client_key => :'key', tls_ca => :'cert');
SELECT * FROM ep;
SELECT count(*) AS key_shown FROM pg_sync.endpoints e WHERE e::text LIKE '%PRIVATE KEY%';
-- Refused, nothing changed: a key of another certificate, half a pair, not PEM, not https.
SELECT pg_sync.create_endpoint('bad', 'https://hooks.example.com/in', tls_client_cert => :'cert', tls_client_key => :'other_key');
SELECT pg_sync.create_endpoint('bad', 'https://hooks.example.com/in', tls_client_cert => :'cert');
SELECT pg_sync.create_endpoint('bad', 'https://hooks.example.com/in', tls_client_key => :'key');
SELECT pg_sync.create_endpoint('bad', 'https://hooks.example.com/in', tls_ca => 'my CA');
SELECT pg_sync.create_endpoint('bad', 'https://hooks.example.com/in', tls_ca => :'key');
SELECT pg_sync.create_endpoint('bad', 'http://hooks.example.com/in', tls_ca => :'cert');
SELECT pg_sync.create_endpoint('bad', 'kafka://broker:9092/t', tls_ca => :'cert');
SELECT pg_sync.alter_endpoint('mtls', tls_client_key => :'other_key');
SELECT pg_sync.alter_endpoint('mtls', url => 'http://hooks.example.com/in');
SELECT pg_sync.alter_endpoint('mtls', tls_client_cert => '');
-- The client certificate is a credential: it does not follow the URL to another origin.
SELECT pg_sync.alter_endpoint('mtls', url => 'https://evil.example.com/in');
SELECT * FROM ep;
-- Nor to a server another CA bundle vouches for (set, replaced or removed): found in review.
SELECT pg_sync.alter_endpoint('mtls', tls_ca => '');
SELECT has_tls_ca FROM ep WHERE name = 'mtls';
-- Dropped with ''; then the URL may go anywhere.
SELECT pg_sync.alter_endpoint('mtls', tls_client_cert => '', tls_client_key => '', tls_ca => '');
SELECT pg_sync.alter_endpoint('mtls', url => 'http://other.example.com/in');
SELECT * FROM ep;

-- OAuth2 client credentials.
SELECT pg_sync.create_endpoint('oa', 'https://api.example.com/events',
    oauth2 => '{"token_url": "https://auth.example.com/oauth/token?tenant=7", "client_id": "pg_sync",
                "client_secret": "hunter2", "scope": "events:write"}');
SELECT name, oauth2 FROM ep WHERE name = 'oa';
SELECT count(*) AS secret_shown FROM pg_sync.endpoints e WHERE e::text LIKE '%hunter2%';
-- Refused, nothing changed.
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '"x"');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => NULL);
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a"}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "", "client_secret": "s"}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a", "client_secret": "s", "grant_type": "password"}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://u:p@auth.example.com/t", "client_id": "a", "client_secret": "s"}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a", "client_secret": "s", "client_auth": "private_key_jwt"}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a", "client_secret": 7}');
SELECT pg_sync.create_endpoint('bad', 'https://api.example.com/events', headers => '{"authorization": "Bearer x"}',
                               oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a", "client_secret": "s"}');
SELECT pg_sync.create_endpoint('bad', 'kafka://broker:9092/t', oauth2 => '{"token_url": "https://auth.example.com/t", "client_id": "a", "client_secret": "s"}');
SELECT pg_sync.alter_endpoint('oa', headers => '{"Authorization": "Bearer x"}');
-- OAuth2 credentials do not follow the URL to another origin either.
SELECT pg_sync.alter_endpoint('oa', url => 'https://evil.example.com/events');
SELECT pg_sync.alter_endpoint('oa', url => 'https://api.example.com/v2/events');
-- Replaced whole; '{}' drops it.
SELECT pg_sync.alter_endpoint('oa', oauth2 => '{"token_url": "http://auth.example.com/t", "client_id": "b", "client_secret": "s", "client_auth": "body", "audience": "api"}');
SELECT name, url, oauth2 FROM ep WHERE name = 'oa';
SELECT pg_sync.alter_endpoint('oa', oauth2 => '{}');
SELECT name, oauth2 FROM ep WHERE name = 'oa';
SELECT count(*) AS bad_endpoints FROM pg_sync._endpoints WHERE name = 'bad';

-- Monitors see the origin of token_url only (its path or query can be a credential too).
SELECT pg_sync.alter_endpoint('oa', oauth2 => '{"token_url": "https://auth.example.com/oauth/token?tenant=7", "client_id": "pg_sync", "client_secret": "hunter2"}');
CREATE ROLE regress_auth_monitor IN ROLE pgsync_monitor;
SET ROLE regress_auth_monitor;
SELECT name, oauth2 FROM pg_sync.endpoints WHERE name = 'oa';
SELECT has_tls_client_key, tls_client_cert_expires FROM pg_sync.endpoints WHERE name = 'mtls';
RESET ROLE;
DROP ROLE regress_auth_monitor;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
RESET client_min_messages;
