// The SQL of queue rotation (sql/src/queue.sql, core/queue_rotation.hpp), for the delivery
// worker's pass. C-style like queue_store.hpp: plain parameters, no object with a destructor, so
// a PostgreSQL ERROR may longjmp out; the pass calls these only through postgres_call.
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg::queue_rotation {

// Whether this database's queue rotates (false: a schema from before 0.3.0, until ALTER EXTENSION
// pg_sync UPDATE).
bool available();
// pg_sync._queue_rotation's row.
void read_state(int *current, TimestampTz *rotated_at, int64 *rotated_seq);
void write_state(int current, int64 rotated_seq);
// The queue sequence's last value (moves with every event captured anywhere in the database).
int64 sequence_position();
// Rows in the partition visible to a snapshot taken now, counted up to limit.
int64 rows_left(int part, int64 limit);
// Takes the partition's exclusive lock if nobody holds any lock on it (kept to the end of the
// pass). A writer still adding to it holds its lock until it commits.
bool try_lock(int part);
// Under try_lock(): moves the partition's rows (ids unchanged) into partition `to`; returns how
// many moved.
int64 carry_over(int part, int to);
// Under try_lock(): TRUNCATE.
void truncate_part(int part);

} // namespace pg_sync::pg::queue_rotation
