// An endpoint's default settings, the one place they are written: the core structs start from
// them, the delivery worker falls back to them, and create_endpoint()'s DEFAULTs in the SQL are
// generated from this file (the Makefile replaces @default:NAME@ in sql/src/ with these values,
// so keep the `inline constexpr long NAME = VALUE;` form). Bounds: core/validate.hpp.
#pragma once

namespace pg_sync::endpoint_defaults {

inline constexpr long batch_size = 100;
inline constexpr long max_attempts = 10;
inline constexpr long timeout_ms = 10000;
inline constexpr long max_in_flight = 4;
inline constexpr long retry_base_ms = 1000;
inline constexpr long retry_max_ms = 3600000;

} // namespace pg_sync::endpoint_defaults
