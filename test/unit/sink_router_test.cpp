// The router (core/sink_router.hpp): one sink::Sink in front of HTTP and Kafka.
#include "core/sink_router.hpp"

#include <gtest/gtest.h>

using namespace pg_sync;

namespace {

// A sink that records what it is asked, with descriptors and a timer set by the test.
class FakeSink final : public sink::Sink {
  public:
    void submit(sink::Request r) override { urls.push_back(r.url); }
    void set_groups(std::size_t n) override { groups = n; }
    std::vector<sink::Completion> take_completions() override { return std::move(done); }
    std::size_t in_flight() const override { return urls.size(); }
    const std::map<int, int> &wait_fds() const override { return fds; }
    bool wait_fds_changed() override { return std::exchange(changed, false); }
    bool wait_fds_replaced() override { return std::exchange(replaced, false); }
    long timeout_ms() const override { return timer; }
    void on_socket(int fd, int) override { sockets.push_back(fd); }
    void on_timeout() override { ++timeouts; }

    std::vector<std::string> urls;
    std::size_t groups = 0;
    std::vector<sink::Completion> done;
    std::map<int, int> fds;
    bool changed = false, replaced = false;
    long timer = -1;
    std::vector<int> sockets;
    int timeouts = 0;
};

sink::Request to(const std::string &url) {
    sink::Request r;
    r.url = url;
    return r;
}

} // namespace

TEST(SinkRouter, RoutesByScheme) {
    FakeSink http, kafka;
    sink::Router router(http, kafka);
    router.submit(to("https://a/hook"));
    router.submit(to("kafka://b:9092/t"));
    router.submit(to("KAFKA://b:9092/t"));
    router.submit(to("http://c/"));
    EXPECT_EQ(http.urls, (std::vector<std::string>{"https://a/hook", "http://c/"}));
    EXPECT_EQ(kafka.urls, (std::vector<std::string>{"kafka://b:9092/t", "KAFKA://b:9092/t"}));
    EXPECT_EQ(router.in_flight(), 4u);
    router.set_groups(3);
    EXPECT_EQ(http.groups, 3u);
    EXPECT_EQ(kafka.groups, 3u);
}

TEST(SinkRouter, OneWaitSetOneTimerCompletionsOfBoth) {
    FakeSink http, kafka;
    sink::Router router(http, kafka);
    http.fds = {{5, sink::kWantWrite}, {6, sink::kWantRead}};
    kafka.fds = {{9, sink::kWantRead}};
    EXPECT_EQ(router.wait_fds(), (std::map<int, int>{{5, sink::kWantWrite}, {6, sink::kWantRead}, {9, sink::kWantRead}}));
    // A change on one side is seen, and the union rebuilt.
    EXPECT_FALSE(router.wait_fds_changed());
    kafka.fds[10] = sink::kWantRead;
    kafka.changed = kafka.replaced = true;
    EXPECT_TRUE(router.wait_fds_replaced());
    EXPECT_TRUE(router.wait_fds_changed());
    EXPECT_EQ(router.wait_fds().size(), 4u);
    router.on_socket(9, sink::kWantRead);
    router.on_socket(6, sink::kWantRead);
    EXPECT_EQ(kafka.sockets, (std::vector<int>{9}));
    EXPECT_EQ(http.sockets, (std::vector<int>{6}));
    // The earlier timer; only the side that is due runs.
    EXPECT_EQ(router.timeout_ms(), -1);
    http.timer = 40;
    kafka.timer = 7;
    EXPECT_EQ(router.timeout_ms(), 7);
    kafka.timer = 0;
    router.on_timeout();
    EXPECT_EQ(kafka.timeouts, 1);
    EXPECT_EQ(http.timeouts, 0);
    sink::Completion a, b;
    a.token = 1;
    b.token = 2;
    http.done.push_back(a);
    kafka.done.push_back(b);
    const auto done = router.take_completions();
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].token + done[1].token, 3u);
}
