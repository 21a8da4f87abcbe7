// Exact pending counts (core/pending_counts.hpp): the rules alone, then a model of the shared
// counts (src/pg/queue_counters.cpp) run through every interleaving of writers, the delivery
// worker and a recount, checked against the truth.
#include "core/pending_counts.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace pg_sync::pending;

TEST(PendingCounts, WidenFollowsTheEpoch) {
    const std::uint64_t next = (std::uint64_t(3) << 32) + 100; // epoch 3, xid 100
    EXPECT_EQ(widen(next, 100), next);
    EXPECT_EQ(widen(next, 90), next - 10);
    // An xid of the previous epoch, just before the wraparound.
    EXPECT_EQ(widen(next, 0xFFFFFFF0u), (std::uint64_t(2) << 32) + 0xFFFFFFF0u);
}

TEST(PendingCounts, CountedInSnapshot) {
    const std::uint64_t xip[] = {105, 108};
    const SnapshotXids s{100, 110, xip, 2};
    EXPECT_TRUE(counted_in(s, 99));   // ended before
    EXPECT_TRUE(counted_in(s, 104));  // ended before, not running
    EXPECT_FALSE(counted_in(s, 105)); // running then
    EXPECT_FALSE(counted_in(s, 108));
    EXPECT_FALSE(counted_in(s, 110)); // begun after
    EXPECT_FALSE(counted_in(s, 5000));
}

TEST(PendingCounts, CommitRule) {
    EXPECT_FALSE(at_commit(true, false, false).to_pending); // counted: skip
    EXPECT_FALSE(at_commit(true, false, true).to_side);
    EXPECT_TRUE(at_commit(false, false, false).to_pending);
    EXPECT_FALSE(at_commit(false, false, false).to_side);
    EXPECT_TRUE(at_commit(false, false, true).to_side); // a recount is running: remember it
    EXPECT_TRUE(at_commit(true, true, false).to_pending); // its own recount never saw its changes
}

TEST(LocalDeltas, SubtransactionsMergeOrVanish) {
    LocalDeltas d;
    EXPECT_TRUE(d.add(7, 1, 1));
    EXPECT_TRUE(d.add(7, 1, 1));
    EXPECT_TRUE(d.add(8, 1, 1));
    EXPECT_EQ(d.size(), 2u);
    // SAVEPOINT a (2); SAVEPOINT b (3): rows in both, b released, a rolled back.
    d.add(7, 2, 5);
    d.add(9, 3, 4);
    d.commit_sub(3, 2);
    d.abort_sub(2);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].endpoint, 7);
    EXPECT_EQ(d[0].n, 2);
    // SAVEPOINT c (4) released into the top level: merged with the top level's entries.
    d.add(7, 4, 3);
    d.add(8, 4, -1);
    d.commit_sub(4, 1);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].n, 5);
    EXPECT_EQ(d[1].n, 0);
    // A child that committed into its parent goes with the parent's rollback.
    d.add(9, 5, 1);
    d.add(9, 6, 1);
    d.commit_sub(6, 5);
    d.abort_sub(5);
    EXPECT_EQ(d.size(), 2u);
    d.clear();
    EXPECT_TRUE(d.empty());
}

TEST(LocalDeltas, FullIsSaid) {
    LocalDeltas d;
    for (std::size_t i = 0; i < LocalDeltas::kCapacity; ++i)
        ASSERT_TRUE(d.add(std::int32_t(i), 1, 1));
    EXPECT_FALSE(d.add(-1, 1, 1));
    EXPECT_TRUE(d.add(0, 1, 1)); // an existing entry still grows
}

// --- The shared counts, modelled --------------------------------------------------------------------
//
// One endpoint. The queue holds `truth` committed events. Actors take steps; each step is atomic
// (what the real code does under the counters' lock, or a commit becoming visible):
//   writer:  begin (gets an xid), commit (its delta becomes part of the truth, visible to
//            snapshots taken from then on), publish (XACT_EVENT_COMMIT: applies at_commit)
//   worker:  a pass that recounts first and then deletes (delete delta negative): begin,
//            start recount (snapshot; side := 0), finish recount, commit, publish
//   recount: (by the worker of an earlier pass) start, finish
// The count a recount uses is the truth as of its snapshot (what a count under it returns).
namespace {

struct Model {
    std::int64_t truth = 0;    // committed events
    std::int64_t pending = 0;  // the shared count
    std::int64_t side = 0;
    bool recounting = false;
    bool have_snapshot = false;
    std::uint64_t xmin = 0, xmax = 0;
    std::vector<std::uint64_t> xip;
    std::int64_t counted = 0; // truth under the snapshot
    std::uint64_t next_xid = 100;
    std::set<std::uint64_t> running;
    std::uint64_t recount_xid = 0; // the transaction that took the snapshot (0: another one)

    void start_recount(std::uint64_t by_xid) {
        xip.assign(running.begin(), running.end());
        xip.erase(std::remove(xip.begin(), xip.end(), by_xid), xip.end()); // not its own
        xmax = next_xid;
        xmin = xip.empty() ? xmax : *std::min_element(xip.begin(), xip.end());
        counted = truth;
        side = 0;
        recounting = true;
        have_snapshot = true;
        recount_xid = by_xid;
    }
    void finish_recount() {
        pending = finish(counted, side);
        side = 0;
        recounting = false;
    }
    void publish(std::uint64_t xid, std::int64_t delta) {
        const SnapshotXids s{xmin, xmax, xip.data(), xip.size()};
        const bool counted_by = have_snapshot && counted_in(s, xid);
        const CommitRule r = at_commit(counted_by, recount_xid != 0 && recount_xid == xid, recounting);
        if (r.to_pending)
            pending += delta;
        if (r.to_side)
            side += delta;
    }
};

struct Actor {
    std::string name;
    std::vector<std::function<void(Model &)>> steps;
};

// Runs every interleaving of the actors' steps (each actor's in its order) and calls check at
// the end of each.
void interleave(const std::vector<Actor> &actors, const std::function<Model()> &init,
                const std::function<void(const Model &, const std::string &)> &check) {
    std::vector<std::size_t> pos(actors.size(), 0);
    std::vector<std::size_t> order;
    std::function<void()> rec = [&]() {
        bool any = false;
        for (std::size_t a = 0; a < actors.size(); ++a) {
            if (pos[a] == actors[a].steps.size())
                continue;
            any = true;
            order.push_back(a);
            ++pos[a];
            rec();
            --pos[a];
            order.pop_back();
        }
        if (any)
            return;
        Model m = init();
        std::vector<std::size_t> at(actors.size(), 0);
        std::string trace;
        for (std::size_t a : order) {
            actors[a].steps[at[a]++](m);
            trace += actors[a].name + std::to_string(at[a]) + " ";
        }
        check(m, trace);
    };
    rec();
}

// A writer that commits `delta` events; xid assigned at its begin step.
Actor writer(const std::string &name, std::int64_t delta) {
    auto xid = std::make_shared<std::uint64_t>(0);
    Actor a{name, {}};
    a.steps.push_back([xid](Model &m) { *xid = m.next_xid++; m.running.insert(*xid); });
    a.steps.push_back([xid, delta](Model &m) { m.running.erase(*xid); m.truth += delta; });
    a.steps.push_back([xid, delta](Model &m) { m.publish(*xid, delta); });
    return a;
}

} // namespace

TEST(PendingCountsModel, EveryInterleavingOfWritersAndARecountIsExact) {
    // The counts start wrong (as after a restart: nothing known); the recount must fix them,
    // whatever the writers do around it.
    const std::vector<Actor> actors = {
        writer("a", 3), writer("b", 5), writer("c", -2),
        {"r", {[](Model &m) { m.start_recount(0); }, [](Model &m) { m.finish_recount(); }}}};
    std::size_t runs = 0;
    interleave(
        actors,
        [] {
            Model m;
            m.truth = 10;
            m.pending = 999;
            return m;
        },
        [&](const Model &m, const std::string &trace) {
            ++runs;
            ASSERT_EQ(m.pending, m.truth) << trace;
            ASSERT_EQ(m.side, 0) << trace;
        });
    EXPECT_EQ(runs, 92400u); // 11! / (3! 3! 3! 2!): every interleaving ran
}

TEST(PendingCountsModel, TheWorkersOwnRecountAndDeletesAreExact) {
    // The worker recounts first in its pass, then deletes 4 delivered events, commits and
    // publishes; writers commit around it. Its own xid may have been assigned before the
    // snapshot (it is not in its own snapshot's running list, so counted_in says "counted").
    auto wxid = std::make_shared<std::uint64_t>(0);
    Actor worker{"w",
                 {[wxid](Model &m) { *wxid = m.next_xid++; m.running.insert(*wxid); },
                  [wxid](Model &m) { m.start_recount(*wxid); },
                  [](Model &m) { m.finish_recount(); },
                  [wxid](Model &m) { m.running.erase(*wxid); m.truth -= 4; },
                  [wxid](Model &m) { m.publish(*wxid, -4); }}};
    const std::vector<Actor> actors = {writer("a", 2), writer("b", 7), worker};
    std::size_t runs = 0;
    interleave(
        actors,
        [] {
            Model m;
            m.truth = 20;
            m.pending = -1;
            return m;
        },
        [&](const Model &m, const std::string &trace) {
            ++runs;
            ASSERT_EQ(m.pending, m.truth) << trace;
        });
    EXPECT_GT(runs, 1000u);
}

TEST(PendingCountsModel, LaterPassesOfTheWorkerAndLateWritersAfterAFinishedRecount) {
    // A recount by an earlier pass; then the worker's next pass (a new xid, after the snapshot)
    // deletes, while a writer that was running during the recount and one that committed before
    // it but publishes only now finish.
    auto exid = std::make_shared<std::uint64_t>(0);
    const std::vector<Actor> actors = {
        writer("a", 6),
        writer("b", 1),
        {"r",
         {[](Model &m) { m.start_recount(0); }, [](Model &m) { m.finish_recount(); },
          // the worker's next pass
          [exid](Model &m) { *exid = m.next_xid++; m.running.insert(*exid); },
          [exid](Model &m) { m.running.erase(*exid); m.truth -= 3; },
          [exid](Model &m) { m.publish(*exid, -3); }}}};
    interleave(
        actors,
        [] {
            Model m;
            m.truth = 50;
            m.pending = 0;
            return m;
        },
        [&](const Model &m, const std::string &trace) { ASSERT_EQ(m.pending, m.truth) << trace; });
}

TEST(PendingCountsModel, EachRuleIsNeeded) {
    // Break one rule at a time: some interleaving then ends with a wrong count, which shows the
    // model explores the cases each rule exists for.
    for (int broken = 0; broken < 2; ++broken) {
        std::vector<Actor> actors = {writer("a", 3), writer("b", 5),
                                     {"r", {[](Model &m) { m.start_recount(0); }, [](Model &m) { m.finish_recount(); }}}};
        // The writers again, with a broken publish step.
        for (int w = 0; w < 2; ++w) {
            const std::int64_t delta = w == 0 ? 3 : 5;
            auto xid_of = std::make_shared<std::uint64_t>(0);
            actors[std::size_t(w)].steps[0] = [xid_of](Model &m) { *xid_of = m.next_xid++; m.running.insert(*xid_of); };
            actors[std::size_t(w)].steps[1] = [xid_of, delta](Model &m) { m.running.erase(*xid_of); m.truth += delta; };
            actors[std::size_t(w)].steps[2] = [xid_of, delta, broken](Model &m) {
                const SnapshotXids s{m.xmin, m.xmax, m.xip.data(), m.xip.size()};
                const bool counted = m.have_snapshot && counted_in(s, *xid_of);
                if (broken == 0) { // no snapshot check: always add
                    m.pending += delta;
                    if (m.recounting)
                        m.side += delta;
                } else { // no side counts: a recount forgets what committed while it ran
                    if (!counted)
                        m.pending += delta;
                }
            };
        }
        std::size_t wrong = 0;
        interleave(
            actors, [] { Model m; m.truth = 1; m.pending = 1; return m; },
            [&](const Model &m, const std::string &) { wrong += m.pending != m.truth; });
        EXPECT_GT(wrong, 0u) << "broken rule " << broken;
    }
}
