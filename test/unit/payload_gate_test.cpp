// core/payload_gate: which events of a head the worker may read without payload.
#include "core/dispatcher.hpp"
#include "core/payload_gate.hpp"

#include <gtest/gtest.h>

#include <string>

using pg_sync::dispatch::PayloadGate;
using pg_sync::dispatch::QueuedEvent;

namespace {

constexpr std::int64_t kNow = 1795428902000;

QueuedEvent ev(std::int64_t id, const std::string &op, const std::string &table, const std::string &key) {
    QueuedEvent q;
    q.id = id;
    q.op = op;
    if (op != "emit")
        q.table = table;
    if (!key.empty())
        q.key = key;
    return q;
}
QueuedEvent row(std::int64_t id, const std::string &key, const std::string &table = "public.t") {
    return ev(id, "update", table, "{\"id\":" + key + "}");
}

} // namespace

TEST(PayloadGate, NothingBlockedEverythingSendable) {
    PayloadGate g;
    EXPECT_TRUE(g.sendable(row(1, "1"), false, kNow));
    EXPECT_TRUE(g.sendable(row(2, "1"), false, kNow)); // same key, may share the request
    EXPECT_TRUE(g.sendable(row(3, "2"), false, kNow));
}

TEST(PayloadGate, DeadLetterBlocksLaterEventsOfItsKeyOnly) {
    PayloadGate g;
    g.add_dead(row(5, "1"));
    EXPECT_TRUE(g.sendable(row(3, "1"), false, kNow)); // before the dead letter
    EXPECT_FALSE(g.sendable(row(6, "1"), false, kNow));
    EXPECT_FALSE(g.sendable(row(7, "1"), false, kNow));
    EXPECT_TRUE(g.sendable(row(8, "2"), false, kNow));
    EXPECT_TRUE(g.sendable(row(9, "1", "public.other"), false, kNow)); // same key text, other table
}

TEST(PayloadGate, InFlightOrRetryingBlocksTheRestOfTheKey) {
    PayloadGate g;
    EXPECT_FALSE(g.sendable(row(1, "1"), true, kNow)); // in flight
    EXPECT_FALSE(g.sendable(row(2, "1"), false, kNow));
    QueuedEvent waiting = row(3, "2");
    waiting.next_attempt_ms = kNow + 1000;
    EXPECT_FALSE(g.sendable(waiting, false, kNow));
    EXPECT_FALSE(g.sendable(row(4, "2"), false, kNow));
    QueuedEvent due = row(5, "3");
    due.next_attempt_ms = kNow; // due now
    EXPECT_TRUE(g.sendable(due, false, kNow));
}

TEST(PayloadGate, TruncateWaitsForEveryEarlierEventOfItsTableAndBarsTheRest) {
    PayloadGate g;
    EXPECT_FALSE(g.sendable(row(1, "1"), true, kNow));
    EXPECT_FALSE(g.sendable(ev(2, "truncate", "public.t", ""), false, kNow));
    EXPECT_FALSE(g.sendable(row(3, "9"), false, kNow)); // behind the blocked truncate
    EXPECT_TRUE(g.sendable(row(4, "9", "public.other"), false, kNow));
    // A dead row of the table blocks a later truncate; a dead truncate blocks later rows.
    PayloadGate h;
    h.add_dead(row(1, "1"));
    h.add_dead(ev(10, "truncate", "public.u", ""));
    EXPECT_FALSE(h.sendable(ev(2, "truncate", "public.t", ""), false, kNow));
    EXPECT_TRUE(h.sendable(row(5, "1", "public.u"), false, kNow));
    EXPECT_FALSE(h.sendable(row(11, "1", "public.u"), false, kNow));
}

TEST(PayloadGate, EmitsAreOrderedByTheirKeyOnly) {
    PayloadGate g;
    g.add_dead(ev(1, "emit", "", "order-7"));
    EXPECT_FALSE(g.sendable(ev(2, "emit", "", "order-7"), false, kNow));
    EXPECT_TRUE(g.sendable(ev(3, "emit", "", "order-8"), false, kNow));
    EXPECT_TRUE(g.sendable(ev(4, "emit", "", ""), false, kNow)); // no key: ordered with nothing
    EXPECT_TRUE(g.sendable(row(5, "1"), false, kNow));
}
