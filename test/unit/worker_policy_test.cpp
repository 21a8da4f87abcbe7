// The delivery worker's small decisions (core/worker_policy.hpp).
#include "core/worker_policy.hpp"

#include <gtest/gtest.h>

using namespace pg_sync::worker;

TEST(SplitHeaderLines, SplitsAndDropsEmptyLines) {
    EXPECT_EQ(split_header_lines("A: 1\nB: 2"), (std::vector<std::string>{"A: 1", "B: 2"}));
    EXPECT_EQ(split_header_lines("\nA: 1\n\n"), (std::vector<std::string>{"A: 1"}));
    EXPECT_TRUE(split_header_lines("").empty());
    EXPECT_EQ(split_header_lines("X: a: b"), (std::vector<std::string>{"X: a: b"}));
}

TEST(StatsThrottle, WritesAtMostEveryIntervalUnlessUrgent) {
    StatsThrottle t;
    EXPECT_TRUE(t.due(1000));
    t.written(1000);
    EXPECT_FALSE(t.due(1000 + StatsThrottle::kIntervalMs - 1));
    EXPECT_TRUE(t.due(1000 + StatsThrottle::kIntervalMs));
    t.mark_urgent();
    EXPECT_TRUE(t.due(1001));
    t.written(1001);
    EXPECT_FALSE(t.due(1002));
    EXPECT_EQ(t.next_ms(false), -1);
    EXPECT_EQ(t.next_ms(true), 1001 + StatsThrottle::kIntervalMs);
}

TEST(AttemptRing, WrapsAndKeepsTheNewest) {
    AttemptRing r;
    EXPECT_TRUE(r.needs_trim(4));
    r.trimmed(4);
    EXPECT_FALSE(r.needs_trim(4));
    EXPECT_TRUE(r.needs_trim(5));
    EXPECT_TRUE(r.needs_position());
    r.set_position(2);
    EXPECT_EQ(r.take(3, 4), (std::vector<std::int32_t>{2, 3, 0}));
    // Six outcomes in a ring of four: only the newest four are written, each slot once.
    EXPECT_EQ(AttemptRing::first_written(6, 4), 2u);
    EXPECT_EQ(r.take(6, 4), (std::vector<std::int32_t>{1, 2, 3, 0}));
    EXPECT_EQ(r.take(1, 4), (std::vector<std::int32_t>{1}));
    EXPECT_TRUE(r.take(3, 0).empty());
    r.reset();
    EXPECT_TRUE(r.needs_position());
    EXPECT_TRUE(r.needs_trim(4));
}

TEST(AttemptRing, PositionBeyondTheRingWraps) {
    AttemptRing r;
    r.set_position(10); // the setting shrank since the last row was written
    EXPECT_EQ(r.take(2, 4), (std::vector<std::int32_t>{2, 3}));
}

TEST(WaitTimeout, EarliestDeadlineAtLeastOneMs) {
    Deadlines d;
    d.now_ms = 1000;
    d.sweep_ms = 6000;
    EXPECT_EQ(wait_timeout_ms(d), 5000);
    d.retry_due_ms = 1500;
    EXPECT_EQ(wait_timeout_ms(d), 500);
    d.stats_ms = 1200;
    EXPECT_EQ(wait_timeout_ms(d), 200);
    d.retry_due_ms = 900; // past: at least 1 ms (a pass runs and advances it)
    EXPECT_EQ(wait_timeout_ms(d), 1);
}

TEST(WaitTimeout, FailedPassPendingPostponesWhatOnlyStartsAPass) {
    // After a failed pass, sweep, retries due and statistics stay in the past until a pass
    // succeeds: they must not wake the worker before the pass may run again (no 1 ms spin).
    Deadlines d;
    d.now_ms = 1000;
    d.sweep_ms = 0;
    d.retry_due_ms = 900;
    d.stats_ms = 950;
    d.pass_retry_ms = 1150;
    EXPECT_EQ(wait_timeout_ms(d), 150);
    d.transport_ms = 20; // the transport's own timer still wakes it
    EXPECT_EQ(wait_timeout_ms(d), 20);
    d.transport_ms = -1;
    d.sweep_ms = 1100; // a deadline before the retry waits for it too
    EXPECT_EQ(wait_timeout_ms(d), 150);
    d.pass_retry_ms = 900; // the retry is due: wake at once (1 ms)
    EXPECT_EQ(wait_timeout_ms(d), 1);
}

TEST(WaitTimeout, TransportTimerDueNowGivesZero) {
    Deadlines d;
    d.now_ms = 1000;
    d.sweep_ms = 6000;
    d.transport_ms = 30;
    EXPECT_EQ(wait_timeout_ms(d), 30);
    d.transport_ms = 0;
    EXPECT_EQ(wait_timeout_ms(d), 0);
}

TEST(PassRetry, DoublesToTheCapAndResets) {
    PassRetry p;
    EXPECT_FALSE(p.failing());
    EXPECT_TRUE(p.may_run(0));
    EXPECT_EQ(p.retry_at_ms(), -1);
    EXPECT_EQ(p.failed(1000), 1000 + std::int64_t(PassRetry::kBaseMs));
    EXPECT_FALSE(p.may_run(1000));
    EXPECT_TRUE(p.may_run(1000 + std::int64_t(PassRetry::kBaseMs)));
    EXPECT_EQ(p.failed(2000), 2000 + 2 * std::int64_t(PassRetry::kBaseMs));
    for (int i = 0; i < 100; ++i)
        p.failed(5000);
    EXPECT_EQ(p.retry_at_ms(), 5000 + std::int64_t(PassRetry::kMaxMs));
    p.succeeded();
    EXPECT_FALSE(p.failing());
    EXPECT_TRUE(p.may_run(0));
}

TEST(CommitWake, EventsWakeTheWorkerUnlessEveryEndpointIsPaused) {
    EXPECT_TRUE(events_wake_worker(1, true));
    EXPECT_TRUE(events_wake_worker(3, true));
    EXPECT_FALSE(events_wake_worker(0, true));  // every endpoint paused (or none)
    EXPECT_TRUE(events_wake_worker(0, false)); // endpoints not loaded yet
}

TEST(RestartDelay, LauncherScheduleUnchanged) {
    // The launcher's former arithmetic: 1000 * 2^(failures - 1), at most 60 s (failures <= 7).
    for (int f = 1; f <= 7; ++f)
        EXPECT_EQ(restart_delay_ms(f), std::min<std::uint64_t>(60000, 1000ull << (f - 1))) << f;
}

TEST(AckGroup, DueAfterTheDelayOfItsOldestAnswer) {
    AckGroup g;
    EXPECT_TRUE(g.empty());
    EXPECT_EQ(g.due_ms(10), -1);
    EXPECT_FALSE(g.due(5000, 10));
    g.add(1000, true);
    g.add(1007, true); // a later answer does not move the deadline
    EXPECT_EQ(g.due_ms(10), 1010);
    EXPECT_FALSE(g.due(1009, 10));
    EXPECT_TRUE(g.due(1010, 10));
    EXPECT_TRUE(g.due(1000, 0)); // ack_delay 0: at once
    g.recorded();
    EXPECT_TRUE(g.empty());
    EXPECT_EQ(g.due_ms(10), -1);
}

TEST(AckGroup, AFailureOrAFullGroupIsDueAtOnce) {
    AckGroup g;
    g.add(1000, true);
    g.add(1003, false); // a retry, dead letter or 410 changes what the next read must see
    EXPECT_EQ(g.due_ms(60000), 1000);
    EXPECT_TRUE(g.due(1003, 60000));
    g.recorded();
    for (std::size_t i = 0; i < AckGroup::kMaxAnswers - 1; ++i)
        g.add(2000, true);
    EXPECT_FALSE(g.due(2000, 60000));
    g.add(2001, true);
    EXPECT_TRUE(g.due(2001, 60000));
}

TEST(AckGroup, OnlyAGroupOfSuccessesCommitsWithoutWaitingForTheDisk) {
    AckGroup g;
    EXPECT_FALSE(g.durable(10)); // nothing to record (a read, statistics)
    EXPECT_TRUE(g.durable(0));   // ack_delay = 0: every commit waits, as in 0.3.0
    g.add(1000, true);
    g.add(1001, true);
    EXPECT_FALSE(g.durable(10));
    EXPECT_TRUE(g.durable(0));
    g.add(1002, false); // a retry, a dead letter, a 410: recorded durably
    EXPECT_TRUE(g.durable(10));
    g.recorded();
    EXPECT_FALSE(g.durable(10));
}

TEST(AckGroup, StatisticsAloneDoNotCutAGroupShort) {
    EXPECT_EQ(stats_pass_ms(-1, 1500), -1);   // nothing to write
    EXPECT_EQ(stats_pass_ms(1200, -1), 1200); // no answer waits
    EXPECT_EQ(stats_pass_ms(1200, 1500), 1500);
    EXPECT_EQ(stats_pass_ms(1800, 1500), 1800);
}

TEST(WaitTimeout, WakesForTheAnswersToRecord) {
    Deadlines d;
    d.now_ms = 1000;
    d.sweep_ms = 6000;
    d.ack_ms = 1010;
    EXPECT_EQ(wait_timeout_ms(d), 10);
    d.pass_retry_ms = 1200; // a failed pass waits: the group with it
    EXPECT_EQ(wait_timeout_ms(d), 200);
}
