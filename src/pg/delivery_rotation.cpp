// The delivery pass's part in queue rotation (core/queue_rotation.hpp decides; the SQL is in
// queue_rotation.cpp): load where the rotation stands, empty the partitions that are no longer
// current once their events left, make the next partition current. Runs inside the pass's
// transaction, after the outcomes were recorded (so that this pass's deletes count as gone) and
// before the heads are read; the exclusive lock on a truncated partition is held until the pass
// commits, which is short. A failed pass rolls all of it back; the worker then reloads the state
// from pg_sync._queue_rotation (undo in delivery_pass.cpp).
//
// Reaches PostgreSQL only through postgres_call (guard.hpp).
#include "pg/pg_prelude.hpp"

#include "pg/delivery.hpp"
#include "pg/guard.hpp"
#include "pg/queue_rotation.hpp"
#include "pg/settings.hpp"

#include <optional>

namespace pg_sync::pg {

namespace qr = queue_rotation;

void rotate_queue(DeliveryWorker &w, std::int64_t now_ms) {
    if (!w.rotation_loaded) {
        bool available = false;
        postgres_call([&] { available = qr::available(); });
        if (!available)
            return; // a schema from before 0.3.0: one unpartitioned queue, until the update
        int current = 0;
        TimestampTz rotated_at = 0;
        int64 rotated_seq = 0;
        postgres_call([&] { qr::read_state(&current, &rotated_at, &rotated_seq); });
        w.rotation.start(current, unix_ms(rotated_at), rotated_seq, now_ms);
        w.rotation_loaded = true;
    }
    rotation::Config config;
    config.interval_ms = settings.queue_rotation_interval_ms;
    for (const int part : w.rotation.due(now_ms)) {
        // A first look without the lock, then, when it seems there is something to do, the lock
        // and a second look under a snapshot taken after it: every writer that added rows has
        // committed (or still holds its lock, and the lock is refused).
        int64 rows = 0;
        postgres_call([&] { rows = qr::rows_left(part, config.carry_limit + 1); });
        if (w.rotation.decide(config, part, rows, now_ms) == rotation::Cleanup::Wait) {
            if (rows > config.carry_limit)
                w.rotation.checked_many_left(config, part, now_ms);
            else
                w.rotation.checked(part, false, now_ms, rows);
            continue;
        }
        bool locked = false;
        postgres_call([&] { locked = qr::try_lock(part); });
        if (locked)
            postgres_call([&] { rows = qr::rows_left(part, config.carry_limit + 1); });
        const rotation::Cleanup action =
            locked ? w.rotation.decide(config, part, rows, now_ms) : rotation::Cleanup::Wait;
        if (action == rotation::Cleanup::Wait) {
            w.rotation.checked(part, false, now_ms);
            continue;
        }
        const int to = w.rotation.current();
        if (action == rotation::Cleanup::CarryOver) {
            int64 moved = 0;
            postgres_call([&] { moved = qr::carry_over(part, to); });
            w.rotation_carried += moved;
            w.rotation.carried_over();
        }
        postgres_call([&] { qr::truncate_part(part); });
        w.rotation.checked(part, true, now_ms);
    }
    if (w.rotation.may_rotate(config, now_ms)) {
        // The interval has passed and the next partition is clean: rotate if events came.
        int64 seq = 0;
        postgres_call([&] { seq = qr::sequence_position(); });
        if (const std::optional<int> to = w.rotation.rotate_to(config, now_ms, seq)) {
            postgres_call([&] { qr::write_state(*to, seq); });
            w.rotation.rotated(*to, now_ms, seq);
        }
    }
}

} // namespace pg_sync::pg
