// When the queue's partitions rotate and are emptied (core/queue_rotation.hpp).
#include "core/queue_rotation.hpp"

#include <gtest/gtest.h>

using namespace pg_sync::rotation;

namespace {
Config config(std::int64_t interval_ms) {
    Config c;
    c.interval_ms = interval_ms;
    c.carry_limit = 100;
    return c;
}
} // namespace

TEST(QueueRotation, AtStartEveryOtherPartitionIsLookedAtAndNothingRotatesBeforeItIsClean) {
    Rotation r;
    r.start(1, 0, 500, 1000);
    EXPECT_EQ(r.current(), 1);
    EXPECT_EQ(r.due(1000), (std::vector<int>{0, 2}));
    // The next partition (2) is not known to be clean: no rotation, however long ago and however
    // many events came.
    EXPECT_FALSE(r.may_rotate(config(10), 100000));
    EXPECT_FALSE(r.rotate_to(config(10), 100000, 900).has_value());
    r.checked(2, true, 1000);
    EXPECT_TRUE(r.clean(2));
    EXPECT_EQ(r.rotate_to(config(10), 100000, 900), 2);
}

TEST(QueueRotation, RotatesOnlyAfterTheIntervalAndOnlyWhenEventsCame) {
    Rotation r;
    r.start(0, 0, 10, 0);
    r.checked(1, true, 0);
    r.checked(2, true, 0);
    const Config c = config(1000);
    EXPECT_FALSE(r.rotate_to(c, 999, 20).has_value());   // interval not over
    EXPECT_FALSE(r.rotate_to(c, 5000, 10).has_value());  // no event since the last rotation
    ASSERT_EQ(r.rotate_to(c, 1000, 20), 1);
    r.rotated(1, 1000, 20);
    EXPECT_EQ(r.current(), 1);
    // The partition that stopped being current may hold rows: looked at from now on.
    EXPECT_FALSE(r.clean(0));
    EXPECT_EQ(r.due(1000), (std::vector<int>{0}));
    // The current partition is never looked at, nor truncated.
    EXPECT_EQ(r.decide(c, 1, 0, 99999), Cleanup::Wait);
    ASSERT_EQ(r.rotate_to(c, 2000, 30), 2);
    r.rotated(2, 2000, 30);
    // Next would be 0, which is not clean yet.
    EXPECT_FALSE(r.rotate_to(c, 3000, 40).has_value());
    r.checked(0, true, 3000);
    EXPECT_EQ(r.rotate_to(c, 3000, 40), 0);
}

TEST(QueueRotation, EmptyPartitionsAreTruncatedStragglersCarriedOverOnlyLateAndFewWait) {
    Rotation r;
    r.start(0, 0, 0, 0);
    r.checked(1, true, 0);
    r.checked(2, true, 0);
    const Config c = config(1000); // carry over 2 s after a partition stopped being current
    r.rotated(1, 10000, 5);        // partition 0 stops being current at 10 s
    EXPECT_EQ(r.decide(c, 0, 0, 10000), Cleanup::Truncate);
    // Never carried over at the first look: it may still be draining.
    EXPECT_EQ(r.decide(c, 0, 3, 12000), Cleanup::Wait);
    r.checked(0, false, 12000, 50);
    EXPECT_EQ(r.decide(c, 0, 3, 13000), Cleanup::Wait);      // fewer than before: draining
    r.checked(0, false, 13000, 3);
    EXPECT_EQ(r.decide(c, 0, 3, 14000), Cleanup::CarryOver);  // late, few, and stuck
    EXPECT_EQ(r.decide(c, 0, 101, 50000), Cleanup::Wait);    // too many to move: vacuum's job
    Rotation early;
    early.start(0, 0, 0, 0);
    early.rotated(1, 10000, 5);
    early.checked(0, false, 10000, 3);
    EXPECT_EQ(early.decide(c, 0, 3, 11999), Cleanup::Wait);  // stuck, but too early to move them
}

TEST(QueueRotation, APartitionNotEmptiedIsLookedAtAgainAfterTheCheckInterval) {
    Rotation r;
    r.start(0, 0, 0, 0);
    r.checked(1, false, 0);
    EXPECT_EQ(r.due(0), (std::vector<int>{2}));
    EXPECT_EQ(r.due(kCheckMs - 1), (std::vector<int>{2}));
    EXPECT_EQ(r.due(kCheckMs), (std::vector<int>{1, 2}));
    r.checked(2, true, kCheckMs);
    EXPECT_EQ(r.due(10 * kCheckMs), (std::vector<int>{1}));
}

TEST(QueueRotation, AnUnknownCurrentPartitionFallsBackToTheFirst) {
    Rotation r;
    r.start(7, 0, 0, 0);
    EXPECT_EQ(r.current(), 0);
    r.start(-1, 0, 0, 0);
    EXPECT_EQ(r.current(), 0);
}

TEST(QueueRotation, APartitionWithMoreRowsThanCanBeCarriedIsLookedAtOncePerInterval) {
    Rotation r;
    r.start(0, 0, 0, 0);
    r.checked(2, true, 0);
    const Config c = config(5000);
    r.checked_many_left(c, 1, 0);
    EXPECT_TRUE(r.due(4999).empty());
    EXPECT_EQ(r.due(5000), (std::vector<int>{1}));
}

TEST(QueueRotation, RowsCarriedIntoTheCurrentPartitionRotateItOutWithoutNewEvents) {
    Rotation r;
    r.start(0, 0, 7, 0);
    r.checked(1, true, 0);
    r.checked(2, true, 0);
    const Config c = config(1000);
    EXPECT_FALSE(r.rotate_to(c, 5000, 7).has_value()); // no event since: stays
    r.carried_over();
    EXPECT_EQ(r.rotate_to(c, 5000, 7), 1);             // the carried rows' partition goes too
    r.rotated(1, 5000, 7);
    r.checked(2, true, 5000);
    EXPECT_FALSE(r.rotate_to(c, 9000, 7).has_value()); // and then nothing more
}
