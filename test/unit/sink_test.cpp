// The seam between the worker and a transport (core/sink.hpp): a fake sink, written only against
// the interface, carries the dispatcher's requests as a second transport would; and the
// dispatcher's calls for a pass that failed (abandon, restore_stats).
#include "core/dispatcher.hpp"
#include "core/sink.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <memory>

using namespace pg_sync;

namespace {

constexpr std::int64_t kNow = 1795428902000; // unix ms

// A transport that answers every request with the next status of its script after one timer
// tick: no sockets, only a timer, as a client library with its own thread might look.
class ScriptedSink final : public sink::Sink {
  public:
    explicit ScriptedSink(std::deque<int> statuses) : statuses_(std::move(statuses)) {}
    void submit(sink::Request request) override {
        submitted.push_back(request.token);
        pending_.push_back(std::move(request));
    }
    void set_groups(std::size_t known_groups) override { groups = known_groups; }
    std::vector<sink::Completion> take_completions() override { return std::move(done_); }
    std::size_t in_flight() const override { return pending_.size(); }
    const std::map<int, int> &wait_fds() const override { return no_fds_; }
    bool wait_fds_changed() override { return false; }
    bool wait_fds_replaced() override { return false; }
    long timeout_ms() const override { return pending_.empty() ? -1 : 0; }
    void on_socket(int, int) override { ADD_FAILURE() << "no sockets here"; }
    void on_timeout() override {
        for (sink::Request &r : pending_) {
            sink::Completion c;
            c.token = r.token;
            c.status = statuses_.empty() ? 200 : statuses_.front();
            if (!statuses_.empty())
                statuses_.pop_front();
            done_.push_back(std::move(c));
        }
        pending_.clear();
    }

    std::vector<std::uint64_t> submitted;
    std::size_t groups = 0;

  private:
    std::deque<int> statuses_;
    std::vector<sink::Request> pending_;
    std::vector<sink::Completion> done_;
    std::map<int, int> no_fds_;
};

dispatch::EndpointConfig endpoint(std::int32_t id) {
    dispatch::EndpointConfig c;
    c.id = id;
    c.name = "ep";
    c.url = "kafka://broker/topic"; // the dispatcher does not look at it; the sink would
    c.batch_size = 2;
    c.max_in_flight = 2;
    c.policy.base_ms = 100;
    c.policy.max_ms = 1000;
    c.policy.max_attempts = 3;
    return c;
}

dispatch::QueuedEvent row(std::int64_t id, int key) {
    dispatch::QueuedEvent q;
    q.id = id;
    q.op = "insert";
    q.table = "public.t";
    q.key = "{\"id\":" + std::to_string(key) + "}";
    q.new_row = q.key;
    q.captured_at_us = 1795428902123456;
    return q;
}

// What the worker's loop does with a sink, in miniature: submit, progress until completions,
// outcomes from the dispatcher.
std::vector<dispatch::Outcome> drive(dispatch::Dispatcher &d, sink::Sink &s, std::vector<sink::Request> requests) {
    s.set_groups(d.sending_endpoints());
    for (sink::Request &r : requests)
        s.submit(std::move(r));
    std::vector<dispatch::Outcome> outcomes;
    while (s.in_flight() > 0) {
        if (s.timeout_ms() == 0)
            s.on_timeout();
        for (const sink::Completion &c : s.take_completions())
            if (auto o = d.complete(c, kNow))
                outcomes.push_back(std::move(*o));
    }
    return outcomes;
}

} // namespace

TEST(Sink, AnotherTransportCarriesTheDispatchersRequests) {
    dispatch::Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1)});
    ScriptedSink s({200, 503});
    const dispatch::Head head = {row(1, 1), row(2, 2), row(3, 3), row(4, 4)};
    std::vector<dispatch::Outcome> outcomes = drive(d, s, d.plan(1, head, kNow));
    EXPECT_EQ(s.groups, 1u);
    ASSERT_EQ(s.submitted.size(), 2u);
    ASSERT_EQ(outcomes.size(), 2u);
    EXPECT_EQ(outcomes[0].verdict, retry::Verdict::Success);
    EXPECT_EQ(outcomes[0].delivered, (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(outcomes[1].verdict, retry::Verdict::Retry);
    EXPECT_EQ(outcomes[1].retry, (std::vector<std::int64_t>{3, 4}));
    EXPECT_EQ(d.in_flight_requests(), 0u);
}

TEST(Sink, CompletionOfAnAbandonedRequestIsIgnored) {
    dispatch::Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1)});
    std::vector<sink::Request> planned = d.plan(1, {row(1, 1), row(2, 2)}, kNow);
    ASSERT_EQ(planned.size(), 1u);
    EXPECT_TRUE(d.in_flight(1, 1));
    EXPECT_GT(d.in_flight_bytes(1), 0u);
    // The pass that planned it failed: it is never submitted, its events may be planned again.
    d.abandon(planned[0].token);
    EXPECT_FALSE(d.in_flight(1, 1));
    EXPECT_EQ(d.in_flight_requests(), 0u);
    EXPECT_EQ(d.in_flight_bytes(1), 0u);
    EXPECT_EQ(d.in_flight_events(1), 0u);
    sink::Completion late;
    late.token = planned[0].token;
    late.status = 200;
    EXPECT_FALSE(d.complete(late, kNow).has_value());
    d.abandon(planned[0].token); // unknown now: ignored

    std::vector<sink::Request> again = d.plan(1, {row(1, 1), row(2, 2)}, kNow);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_NE(again[0].token, planned[0].token);
    EXPECT_EQ(again[0].body, planned[0].body);
}

TEST(Sink, StatisticsOfAFailedPassAreGivenBack) {
    dispatch::Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1)});
    ScriptedSink s({200, 500});
    drive(d, s, d.plan(1, {row(1, 1), row(2, 2), row(3, 3), row(4, 4)}, kNow));
    std::vector<dispatch::EndpointStats> taken = d.take_stats(kNow);
    ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(taken[0].delivered, 2);
    EXPECT_EQ(taken[0].failed_attempts, 1);
    EXPECT_FALSE(d.has_stats());
    d.restore_stats(taken);
    EXPECT_TRUE(d.has_stats());
    // More happens before the next pass writes: counters add up, the newer last_* win.
    ScriptedSink s2({200});
    drive(d, s2, d.plan(1, {row(3, 3), row(4, 4)}, kNow + 5000));
    std::vector<dispatch::EndpointStats> again = d.take_stats(kNow + 5000);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].delivered, 4);
    EXPECT_EQ(again[0].failed_attempts, 1);
    ASSERT_TRUE(again[0].last_failure_ms.has_value());
    EXPECT_EQ(*again[0].last_failure_ms, kNow);
    EXPECT_EQ(again[0].last_status, 500);
    ASSERT_TRUE(again[0].last_success_ms.has_value());
    EXPECT_EQ(*again[0].last_success_ms, kNow);
}
