// An endpoint's default settings, the one place they are written: the core structs start from
// them, the delivery worker falls back to them, and create_endpoint()'s DEFAULTs in the SQL are
// generated from this file (the Makefile replaces @default:NAME@ in sql/src/ with these values,
// so keep the `inline constexpr long NAME = VALUE;` form). Bounds: core/validate.hpp.
#pragma once

namespace pg_sync::endpoint_defaults {

inline constexpr long batch_size = 100;
// With retry_max_ms at an hour, 64 attempts outlast a 24-hour receiver outage before an event
// becomes a dead letter even when every wait draws its lowest jitter (retry_policy_test checks
// it; README, "Retry schedule", shows the schedule).
inline constexpr long max_attempts = 64;
inline constexpr long timeout_ms = 10000;
inline constexpr long max_in_flight = 4;
// A kafka:// endpoint's max_in_flight when create_endpoint() is not given one: a request to Kafka
// is a batch of records handed to librdkafka, which batches them per partition and costs the
// brokers no connection each; with 4 the worker sat idle waiting for acknowledgements for about a
// quarter of a drain (bench/kafka, b100x4 against b100x16).
inline constexpr long kafka_max_in_flight = 16;
inline constexpr long retry_base_ms = 1000;
inline constexpr long retry_max_ms = 3600000;
// Requests per second; 0: no limit (README, "Rate limit").
inline constexpr long max_rate = 0;
// The largest request body, nginx's default client_max_body_size (1 MB).
inline constexpr long max_request_bytes = 1048576;

} // namespace pg_sync::endpoint_defaults
