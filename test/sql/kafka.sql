-- Kafka endpoints: kafka:// URLs, kafka_settings and what goes with them (README, "Kafka").
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;

SELECT pg_sync.create_endpoint('stream', 'kafka://Broker1.example.com:9093,broker2.example.com/orders.v1',
                               kafka_settings => '{"compression.type": "lz4", "linger.ms": 10,
                                                   "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
                                                   "sasl.username": "pg", "sasl.password": "hunter2"}');
-- Values never shown; names are.
SELECT name, url, header_names, has_secret, kafka_setting_names FROM pg_sync.endpoints;
SELECT count(*) AS shown FROM pg_sync.endpoints e WHERE e::text LIKE '%hunter2%';
SELECT pg_sync._url_origin(url) FROM pg_sync._endpoints;

-- max_in_flight's default: 16 for Kafka (any case of the scheme), 4 for webhooks; given, it wins.
SELECT pg_sync.create_endpoint('k_default', 'KAFKA://broker/t');
SELECT pg_sync.create_endpoint('k_given', 'kafka://broker/t', max_in_flight => 2);
SELECT pg_sync.create_endpoint('k_null', 'kafka://broker/t', max_in_flight => NULL);
SELECT pg_sync.create_endpoint('h_default', 'http://127.0.0.1:9/hook');
SELECT name, max_in_flight FROM pg_sync.endpoints WHERE name IN ('k_default', 'k_given', 'k_null', 'h_default') ORDER BY name;
SELECT pg_sync.drop_endpoint(name) FROM pg_sync.endpoints WHERE name IN ('k_default', 'k_given', 'k_null', 'h_default');

-- Bad URLs.
SELECT pg_sync.create_endpoint('k', 'kafka://broker:9092');
SELECT pg_sync.create_endpoint('k', 'kafka://broker:9092/');
SELECT pg_sync.create_endpoint('k', 'kafka:///topic');
SELECT pg_sync.create_endpoint('k', 'kafka://user:pw@broker/topic');
SELECT pg_sync.create_endpoint('k', 'kafka://broker/topic?acks=0');
SELECT pg_sync.create_endpoint('k', 'kafka://broker:99999/topic');
SELECT pg_sync.create_endpoint('k', 'kafka://bro_ker/topic');
SELECT pg_sync.create_endpoint('k', 'kafka://broker/to/pic');
SELECT pg_sync.create_endpoint('k', 'kafka://broker/..');

-- Bad settings: not allowed, fixed by pg_sync, reading files or running programs, bad values.
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"acks": "1"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"enable.idempotence": false}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"ssl.ca.location": "/etc/passwd"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"sasl.kerberos.kinit.cmd": "touch /tmp/x"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"sasl.mechanism": "GSSAPI"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"compression.type": "brotli"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '{"linger.ms": [1]}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => '"lz4"');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', kafka_settings => NULL);

-- Headers and secrets are HTTP's; kafka_settings Kafka's.
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', headers => '{"X-A": "1"}');
SELECT pg_sync.create_endpoint('k', 'kafka://b/t', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT pg_sync.create_endpoint('k', 'https://example.com/h', kafka_settings => '{"linger.ms": 1}');
SELECT count(*) AS endpoints FROM pg_sync._endpoints;

-- alter_endpoint: settings change; http <-> kafka only with what fits the new URL.
SELECT pg_sync.alter_endpoint('stream', kafka_settings => '{"compression.type": "zstd", "sasl.username": "pg", "sasl.password": "x"}');
SELECT kafka_setting_names FROM pg_sync.endpoints WHERE name = 'stream';
SELECT pg_sync.create_endpoint('hook', 'https://example.com/h', headers => '{"Authorization": "Bearer t"}');
SELECT pg_sync.alter_endpoint('hook', url => 'kafka://b/t');
SELECT pg_sync.alter_endpoint('hook', url => 'kafka://b/t', headers => '{}');
SELECT pg_sync.alter_endpoint('hook', kafka_settings => '{"linger.ms": 5}');
SELECT pg_sync.alter_endpoint('hook', url => 'https://example.com/h', kafka_settings => '{"linger.ms": 5}');
SELECT pg_sync.alter_endpoint('hook', url => 'https://example.com/h', kafka_settings => '{}');
-- Credentials never follow a URL to other brokers: the settings must be given again.
SELECT pg_sync.alter_endpoint('stream', url => 'kafka://evil.example.com/orders.v1');
-- The same brokers in another order, another topic: the same origin.
SELECT pg_sync.alter_endpoint('stream', url => 'kafka://broker2.example.com:9092,broker1.example.com:9093/other');
SELECT url, kafka_setting_names FROM pg_sync.endpoints WHERE name = 'stream';
SELECT pg_sync.alter_endpoint('stream', url => 'kafka://evil.example.com/orders.v1', kafka_settings => '{}');
SELECT name, url, header_names, kafka_setting_names FROM pg_sync.endpoints ORDER BY name;
